"""The two investigator roles and the Django permissions each one carries.

Exchange analysts (the operator's investigators) see everything. Partner analysts are linked to one
platform and see only what concerns it; the admin scopes their querysets in one place
(`accounts.scoping`). The groups are created by a migration; their permissions are re-synced after
every `migrate` so that models added later get the right permissions without manual steps.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission, User

EXCHANGE_ANALYST = "Exchange analyst"
PARTNER_ANALYST = "Partner analyst"

# app_label -> {model: actions}
ROLE_PERMISSIONS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    EXCHANGE_ANALYST: {
        "accounts": {
            "platform": ("view", "add", "change"),
            "apikey": ("view", "add", "change"),
            "auditentry": ("view",),
        },
        "exchange": {
            "seller": ("view",),
            "indicator": ("view", "change"),
            "submission": ("view",),
            "appeal": ("view",),
        },
        "graph": {
            "actorcluster": ("view", "change"),
            "clusterevent": ("view",),
            "pendingmerge": ("view", "change"),  # change = approve or reject a held merge
            "approval": ("view", "change"),  # change = approve or reject another analyst's decision
            # one platform's report per row: never for partner analysts; change = "Retry now"
            "reportdelivery": ("view", "change"),
            "webhookdelivery": ("view", "change"),  # change = "Retry now"
            "opinion": ("view", "change"),  # change = accept or reject a false positive
        },
    },
    PARTNER_ANALYST: {
        "exchange": {"seller": ("view",), "appeal": ("view",)},
        # opinion and webhook deliveries: their own platform's (OpinionQuerySet, WebhookDeliveryQuerySet)
        "graph": {
            "actorcluster": ("view",),
            "clusterevent": ("view",),
            "opinion": ("view",),
            "webhookdelivery": ("view",),
        },
    },
}


def sync_role_permissions(sender: Any = None, **kwargs: Any) -> None:
    """Give each role group exactly the permissions listed above (idempotent)."""
    using = kwargs.get("using", "default")
    for group_name, apps in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=group_name)
        wanted = [
            (app_label, f"{action}_{model}")
            for app_label, models in apps.items()
            for model, actions in models.items()
            for action in actions
        ]
        perms = Permission.objects.using(using).filter(
            content_type__app_label__in={app for app, _ in wanted},
            codename__in={codename for _, codename in wanted},
        )
        group.permissions.set([p for p in perms if (p.content_type.app_label, p.codename) in set(wanted)])


def assign_role(user: User, platform: Any | None) -> None:
    """Make `user` an exchange analyst (platform None) or a partner analyst of `platform`: the analyst
    profile and exactly one of the two role groups (other groups are left alone)."""
    from accounts.models import AnalystProfile

    AnalystProfile.objects.update_or_create(user=user, defaults={"platform": platform})
    groups = user.groups
    groups.remove(*Group.objects.filter(name__in=[EXCHANGE_ANALYST, PARTNER_ANALYST]))
    groups.add(Group.objects.get(name=PARTNER_ANALYST if platform else EXCHANGE_ANALYST))


def is_exchange_analyst(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not user.is_authenticated or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    profile = getattr(user, "analyst", None)
    return profile is not None and profile.platform_id is None


# EXCHANGE_ADMIN_2FA: who must pass a second factor (TOTP) after the password to use the admin.
SECOND_FACTOR_POLICIES = ("exchange", "all", "off")


def second_factor_required(user: AbstractBaseUser | AnonymousUser) -> bool:
    """`exchange` (the default): exchange analysts and superusers; `all`: every admin user; `off`: nobody
    (refused at start-up unless DEBUG)."""
    policy = settings.EXCHANGE_ADMIN_2FA
    if policy == "off" or not user.is_authenticated:
        return False
    return policy == "all" or is_exchange_analyst(user)
