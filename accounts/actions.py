"""State changes to API keys: one `do_*` function each, audited in the same durable transaction.

The admin and the `create_api_key` / `revoke_api_key` commands both go through these, so a key is never
created or revoked without its audit entry. `durable=True`: calling one inside an outer transaction is a
programming error (the audit entry must commit with the change, not with whatever the caller does next).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Platform
from exchange.models import AuditEntry

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
