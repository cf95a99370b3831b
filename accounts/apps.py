from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Platforms and access"

    def ready(self) -> None:
        import accounts.schema  # noqa: F401  (registers the OpenAPI auth extension)
        from accounts.roles import sync_role_permissions

        # Permissions of models added by later migrations exist only after post_migrate has run
        # create_permissions; this keeps the role groups in step with them.
        post_migrate.connect(sync_role_permissions, dispatch_uid="accounts.sync_role_permissions")
