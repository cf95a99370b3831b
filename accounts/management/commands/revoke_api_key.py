from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.actions import do_revoke_analyst_key, do_revoke_api_key
from accounts.models import ANALYST_KEY_PREFIX, KEY_PREFIX, AnalystKey, ApiKey


class Command(BaseCommand):
    help = (
        "Revoke an API key by its public prefix (bax_xxxxxxxxxx), or an exchange analyst's key "
        "(baxa_xxxxxxxxxx). Takes effect on the next request."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "prefix", help="The key's prefix as shown in the admin or at creation, or the full key."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text: str = options["prefix"].strip()
        if text.startswith(ANALYST_KEY_PREFIX):
            self.revoke_analyst_key(text[len(ANALYST_KEY_PREFIX) :].split("_", 1)[0])
            return
        lookup = text[len(KEY_PREFIX) :] if text.startswith(KEY_PREFIX) else text
        lookup = lookup.split("_", 1)[0]
        key = ApiKey.objects.select_related("platform").filter(lookup=lookup).first()
        if key is None:
            raise CommandError(f"no API key with prefix {KEY_PREFIX}{lookup}")
        if not do_revoke_api_key(key, actor="system"):
            raise CommandError(f"key {key.prefix} was already revoked at {key.revoked_at:%Y-%m-%d %H:%M} UTC")
        self.stdout.write(f"Revoked key {key.prefix} of {key.platform.slug}.")

    def revoke_analyst_key(self, lookup: str) -> None:
        key = AnalystKey.objects.select_related("user").filter(lookup=lookup).first()
        if key is None:
            raise CommandError(f"no exchange analyst key with prefix {ANALYST_KEY_PREFIX}{lookup}")
        if not do_revoke_analyst_key(key, actor="system"):
            raise CommandError(f"key {key.prefix} was already revoked at {key.revoked_at:%Y-%m-%d %H:%M} UTC")
        self.stdout.write(f"Revoked key {key.prefix} of exchange analyst {key.user.get_username()}.")
