from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.actions import NotAnExchangeAnalyst, do_create_analyst_key


class Command(BaseCommand):
    help = (
        "Create an exchange analyst's key for the TAXII advisories collection (their threat-intelligence "
        "tool's credentials). The key is printed alone on the last line and is never shown again. It works "
        "only while the account is an active exchange analyst; revoke it with revoke_api_key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "username", help="An exchange analyst's username (see create_analyst --exchange)."
        )
        parser.add_argument("--name", default="", help="What the key is for, e.g. 'OpenCTI'.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r} (see create_analyst --exchange)")
        try:
            key, full_key = do_create_analyst_key(user, options["name"], actor="system")
        except NotAnExchangeAnalyst as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Created key {key.prefix} for exchange analyst {user.get_username()}.")
        self.stderr.write(
            "It reads the TAXII advisories collection only. It is shown once, below. Store it now."
        )
        self.stdout.write(full_key)
