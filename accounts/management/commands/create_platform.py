from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email, validate_slug

from accounts.actions import do_save_platform
from accounts.models import Cadence, Platform


class Command(BaseCommand):
    help = "Register a partner platform (marketplace). Prints the platform's slug on success."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="Short identifier, e.g. 'bazaar-north' (letters, digits, - and _).")
        parser.add_argument("--name", required=True, help="Display name, e.g. 'Bazaar North'.")
        parser.add_argument(
            "--report-to",
            action="append",
            default=[],
            metavar="EMAIL",
            help="Recipient of the platform's cluster reports (repeatable).",
        )
        parser.add_argument(
            "--cadence",
            choices=list(Cadence.values),
            default=Cadence.OFF,
            help="Report cadence (default: off).",
        )
        parser.add_argument(
            "--default-region", default="", help="ISO country code for national phone numbers."
        )
        parser.add_argument(
            "--update", action="store_true", help="Update the platform if the slug exists instead of failing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["slug"]
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(
                f"invalid slug {slug!r}: use letters, digits, hyphens and underscores"
            ) from None
        for address in options["report_to"]:
            try:
                validate_email(address)
            except ValidationError:
                raise CommandError(f"--report-to: {address!r} is not a valid email address") from None
        region = options["default_region"].upper()
        if region and (len(region) != 2 or not region.isalpha()):
            raise CommandError(f"--default-region: {region!r} is not a two-letter country code")
        existing = Platform.objects.filter(slug=slug).first()
        if existing and not options["update"]:
            raise CommandError(f"platform {slug!r} already exists (use --update to change it)")
        if Platform.objects.filter(name=options["name"]).exclude(slug=slug).exists():
            raise CommandError(f"another platform is already named {options['name']!r}")
        platform = existing or Platform(slug=slug)
        wanted = {
            "name": options["name"],
            "report_recipients": options["report_to"],
            "report_cadence": options["cadence"],
            "default_region": region,
        }
        changed = [field for field, value in wanted.items() if getattr(platform, field) != value]
        for field, value in wanted.items():
            setattr(platform, field, value)
        do_save_platform(platform, actor="system", changed=changed)
        verb = "Updated" if existing else "Created"
        self.stdout.write(
            f"{verb} platform {platform.slug} ({platform.name}), reports: {platform.report_cadence}"
        )
