from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.actions import do_create_api_key
from accounts.models import SCOPES, Platform


class Command(BaseCommand):
    help = (
        "Create an API key for a platform. The key is printed alone on the last line and is never shown "
        "again; store it in the partner's secret store."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The platform's slug.")
        parser.add_argument(
            "--scopes",
            required=True,
            help=f"Comma-separated subset of: {','.join(SCOPES)}, e.g. submit,lookup",
        )
        parser.add_argument("--name", default="", help="What the key is for, e.g. 'nightly sync'.")

    def handle(self, *args: Any, **options: Any) -> None:
        platform = Platform.objects.filter(slug=options["slug"]).first()
        if platform is None:
            raise CommandError(f"no platform with slug {options['slug']!r} (see create_platform)")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            key, full_key = do_create_api_key(platform, scopes, options["name"], actor="system")
        except ValueError as exc:
            raise CommandError(f"--scopes: {exc}") from None
        self.stderr.write(f"Created key {key.prefix} for {platform.slug} with scopes {','.join(key.scopes)}.")
        self.stderr.write("It is shown once, below. Store it now.")
        self.stdout.write(full_key)
