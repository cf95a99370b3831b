from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
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


class ExchangeAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the exchange's admin site (second factor after the password)."""

    default = False  # named in INSTALLED_APPS; `accounts` itself keeps AccountsConfig

    default_site = "accounts.admin_site.ExchangeAdminSite"

    def ready(self) -> None:
        super().ready()  # autodiscovers every app's admin module
        from django.contrib import admin
        from django_otp.plugins.otp_totp.models import TOTPDevice

        # django-otp's device admin shows secrets; devices are enrolled at login or by `create_analyst --totp`.
        if admin.site.is_registered(TOTPDevice):
            admin.site.unregister(TOTPDevice)
