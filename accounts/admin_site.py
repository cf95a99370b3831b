"""The admin site: Django's, with the second factor between the password and every admin page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, URLResolver, path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from accounts import second_factor


class ExchangeAdminSite(admin.AdminSite):
    site_header = "Bad-actor exchange"
    site_title = "Bad-actor exchange"
    index_title = "Investigations"
    # Django's "View site" link pointed at "/", which has no page: the admin is the analysts' whole site.
    site_url = None

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and second_factor.second_factor_satisfied(request.user)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "GET" and second_factor.awaiting_second_factor(request.user):
            return self._to_second_factor(str(request.GET.get("next", "")))
        extra_context = {
            **(extra_context or {}),
            "sso_enabled": settings.OIDC_ENABLED,
            "sso_refused": request.GET.get("sso") == "refused",
        }
        response = super().login(request, extra_context)
        if (
            request.method == "POST"
            and isinstance(response, HttpResponseRedirect)
            and second_factor.awaiting_second_factor(request.user)
        ):
            # The password was right: the login continues with the second factor, then goes where it was going.
            return self._to_second_factor(response.url)
        return response

    @staticmethod
    def _to_second_factor(target: str) -> HttpResponseRedirect:
        url = reverse("admin:second_factor")
        return HttpResponseRedirect(f"{url}?{urlencode({'next': target})}" if target else url)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # Not wrapped in admin_view: it is for users the site does not admit yet.
        step = never_cache(sensitive_post_parameters("code")(second_factor.second_factor_step))
        return [path("second-factor/", step, name="second_factor"), *super().get_urls()]
