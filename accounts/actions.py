"""State changes to platforms and their API keys: one `do_*` function each, audited in the same durable
transaction.

The admin and the operator commands (`create_platform`, `create_api_key`, `create_analyst_key`,
`revoke_api_key`, `set_webhook`) all go through these, so a platform or key never changes without its audit
entry. `durable=True`: calling one inside an outer transaction is a
programming error (the audit entry must commit with the change, not with whatever the caller does next).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from accounts.models import AnalystKey, ApiKey, AuditEntry, Platform
from accounts.scoping import scope_of
from accounts.webhooks import check_url, new_nonce

logger = logging.getLogger("exchange.accounts")


def do_create_api_key(platform: Platform, scopes: list[str], name: str, actor: str) -> tuple[ApiKey, str]:
    """Create a key and its `api_key_created` audit entry; returns the row and the full key (shown once).

    Raises ValueError for unknown or missing scopes (nothing is written then).
    """
    with transaction.atomic(durable=True):
        key, full_key = ApiKey.generate(platform, scopes, name=name)
        AuditEntry.objects.record(
            "api_key_created", actor, key.platform_id, "api_key", key.prefix, scopes=list(key.scopes)
        )
    logger.info("event=api_key_created key=%s platform=%s", key.prefix, key.platform_id)
    return key, full_key


def do_revoke_api_key(key: ApiKey, actor: str) -> bool:
    """Revoke a key and write its `api_key_revoked` audit entry. False if it was already revoked."""
    with transaction.atomic(durable=True):
        locked = ApiKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is not None:
            key.revoked_at = locked.revoked_at
            return False
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        AuditEntry.objects.record("api_key_revoked", actor, locked.platform_id, "api_key", locked.prefix)
    key.revoked_at = locked.revoked_at
    logger.info("event=api_key_revoked key=%s platform=%s", locked.prefix, locked.platform_id)
    return True


def do_save_platform(platform: Platform, actor: str, changed: list[str] | None = None) -> None:
    """Create `platform` (unsaved) or save the `changed` fields of an existing one, with its audit entry:
    `platform_created`, or `platform_changed` naming the fields (nothing is written if none changed)."""
    creating = platform._state.adding
    if not creating and not changed:
        return
    with transaction.atomic(durable=True):
        platform.save()
        if creating:
            AuditEntry.objects.record("platform_created", actor, platform, "platform", str(platform.pk))
        else:
            AuditEntry.objects.record(
                "platform_changed", actor, platform, "platform", str(platform.pk), fields=list(changed or [])
            )
    logger.info("event=platform_%s platform=%s", "created" if creating else "changed", platform.pk)


# ------------------------------------------------------------------------------------------------ webhooks


def do_set_webhook(platform: Platform, url: str, actor: str) -> str | None:
    """Register or change the platform's webhook URL (checked by `accounts.webhooks.check_url`: https, public
    addresses only). The first registration draws the signing secret and returns it, to be shown once; a
    change of URL keeps the secret and returns None. Raises WebhookUrlError, writing nothing."""
    url = check_url(url)
    with transaction.atomic(durable=True):
        locked = Platform.objects.select_for_update().get(pk=platform.pk)
        secret = None
        fields = ["webhook_url"]
        if not locked.webhook_secret_nonce:
            locked.webhook_secret_nonce, locked.webhook_secret_created_at = new_nonce(), timezone.now()
            fields += ["webhook_secret_nonce", "webhook_secret_created_at"]
            secret = locked.webhook_secret()
        if locked.webhook_url == url and secret is None:
            return None
        locked.webhook_url = url
        locked.save(update_fields=fields)
        # The host only: a URL's path may carry the partner's own routing token.
        AuditEntry.objects.record(
            "webhook_set",
            actor,
            locked,
            "platform",
            str(locked.pk),
            host=urlsplit(url).hostname,
            new_secret=secret is not None,
        )
    _copy_webhook_fields(locked, platform)
    logger.info("event=webhook_set platform=%s new_secret=%s", platform.pk, secret is not None)
    return secret


def do_rotate_webhook_secret(platform: Platform, actor: str) -> str:
    """Draw a new signing secret (the old one stops signing at once) and return it, to be shown once.
    Raises ValueError if the platform has no webhook."""
    with transaction.atomic(durable=True):
        locked = Platform.objects.select_for_update().get(pk=platform.pk)
        if not locked.webhook_url:
            raise ValueError(f"platform {locked.slug} has no webhook; register one first")
        locked.webhook_secret_nonce, locked.webhook_secret_created_at = new_nonce(), timezone.now()
        locked.save(update_fields=["webhook_secret_nonce", "webhook_secret_created_at"])
        AuditEntry.objects.record("webhook_secret_rotated", actor, locked, "platform", str(locked.pk))
    _copy_webhook_fields(locked, platform)
    logger.info("event=webhook_secret_rotated platform=%s", platform.pk)
    return locked.webhook_secret()


def do_remove_webhook(platform: Platform, actor: str) -> bool:
    """Stop sending webhooks to the platform and forget its secret. False if it had none. Events still
    waiting in the outbox are not sent (the sender marks them failed)."""
    with transaction.atomic(durable=True):
        locked = Platform.objects.select_for_update().get(pk=platform.pk)
        if not locked.webhook_url and not locked.webhook_secret_nonce:
            return False
        locked.webhook_url, locked.webhook_secret_nonce, locked.webhook_secret_created_at = "", "", None
        locked.save(update_fields=["webhook_url", "webhook_secret_nonce", "webhook_secret_created_at"])
        AuditEntry.objects.record("webhook_removed", actor, locked, "platform", str(locked.pk))
    _copy_webhook_fields(locked, platform)
    logger.info("event=webhook_removed platform=%s", platform.pk)
    return True


def _copy_webhook_fields(source: Platform, target: Platform) -> None:
    for name in ("webhook_url", "webhook_secret_nonce", "webhook_secret_created_at"):
        setattr(target, name, getattr(source, name))


class NotAnExchangeAnalyst(ValueError):
    """An analyst key was asked for an account that is not an active exchange analyst."""


def do_create_analyst_key(user: Any, name: str, actor: str) -> tuple[AnalystKey, str]:
    """Create an exchange analyst's key (the TAXII advisories collection) and its `analyst_key_created` audit
    entry; returns the row and the full key (shown once). Raises NotAnExchangeAnalyst, writing nothing, for
    anyone else: a partner analyst, a staff account without the role, an inactive account."""
    if not scope_of(user).everything:
        raise NotAnExchangeAnalyst(
            f"{user.get_username()} is not an active exchange analyst (see create_analyst --exchange)"
        )
    with transaction.atomic(durable=True):
        key, full_key = AnalystKey.generate(user, name=name)
        AuditEntry.objects.record(
            "analyst_key_created", actor, None, "analyst_key", key.prefix, analyst=user.get_username()
        )
    logger.info("event=analyst_key_created key=%s user=%s", key.prefix, user.pk)
    return key, full_key


def do_revoke_analyst_key(key: AnalystKey, actor: str) -> bool:
    """Revoke an exchange analyst's key and write its `analyst_key_revoked` audit entry. False if it was
    already revoked."""
    with transaction.atomic(durable=True):
        locked = AnalystKey.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is not None:
            key.revoked_at = locked.revoked_at
            return False
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        AuditEntry.objects.record("analyst_key_revoked", actor, None, "analyst_key", locked.prefix)
    key.revoked_at = locked.revoked_at
    logger.info("event=analyst_key_revoked key=%s user=%s", locked.prefix, locked.user_id)
    return True
