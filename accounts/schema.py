"""OpenAPI description of the API-key authentication (loaded by drf-spectacular via AppConfig.ready)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "bax_<lookup>_<secret>",
            "description": "A platform API key created with `manage.py create_api_key` or in the admin.",
        }
