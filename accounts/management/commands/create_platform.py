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
        parser.add_argument(
            "--name", help="Display name, e.g. 'Bazaar North' (required to create; with --update, optional)."
        )
        # None when not given: with --update, an option not given leaves its field as it is.
        parser.add_argument(
            "--report-to",
            action="append",
            default=None,
            metavar="EMAIL",
            help="Recipient of the platform's cluster reports (repeatable; --update replaces the list).",
        )
        parser.add_argument(
            "--cadence",
            choices=list(Cadence.values),
            default=None,
            help=f"Report cadence (default when creating: {Cadence.OFF}; no reports are sent while off).",
        )
        parser.add_argument(
            "--default-region",
            default=None,
            help="ISO country code for national phone numbers ('' clears it with --update).",
        )
        parser.add_argument(
            "--update",
            action="store_true",
            help="Update the platform if the slug exists instead of failing: only the options given change.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug: str = options["slug"]
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(
                f"invalid slug {slug!r}: use letters, digits, hyphens and underscores"
            ) from None
        for address in options["report_to"] or []:
            try:
                validate_email(address)
            except ValidationError:
                raise CommandError(f"--report-to: {address!r} is not a valid email address") from None
        region = None if options["default_region"] is None else options["default_region"].upper()
        if region and (len(region) != 2 or not region.isalpha()):
            raise CommandError(f"--default-region: {region!r} is not a two-letter country code")
        existing = Platform.objects.filter(slug=slug).first()
        if existing and not options["update"]:
            raise CommandError(f"platform {slug!r} already exists (use --update to change it)")
        if existing is None and not options["name"]:
            raise CommandError("--name is required to create a platform")
        if options["name"] and Platform.objects.filter(name=options["name"]).exclude(slug=slug).exists():
            raise CommandError(f"another platform is already named {options['name']!r}")
        given = {
            "name": options["name"],
            "report_recipients": options["report_to"],
            "report_cadence": options["cadence"],
            "default_region": region,
        }
        if existing is None:
            defaults = {"report_recipients": [], "report_cadence": Cadence.OFF, "default_region": ""}
            wanted = {field: defaults[field] if value is None else value for field, value in given.items()}
        else:
            wanted = {field: value for field, value in given.items() if value is not None}
        platform = existing or Platform(slug=slug)
        changed = [field for field, value in wanted.items() if getattr(platform, field) != value]
        for field, value in wanted.items():
            setattr(platform, field, value)
        do_save_platform(platform, actor="system", changed=changed)
        verb = "Updated" if existing else "Created"
        self.stdout.write(
            f"{verb} platform {platform.slug} ({platform.name}), reports: {platform.report_cadence}"
        )
