from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from accounts.models import Platform
from accounts.roles import assign_role
from accounts.second_factor import do_replace_totp_device


class Command(BaseCommand):
    help = (
        "Create an investigator account for the admin: an exchange analyst (--exchange, sees everything) "
        "or a partner analyst (--platform SLUG, sees only that platform's clusters)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        role = parser.add_mutually_exclusive_group(required=True)
        role.add_argument(
            "--exchange", action="store_true", help="Exchange analyst (operator's investigator)."
        )
        role.add_argument("--platform", metavar="SLUG", help="Partner analyst of this platform.")
        parser.add_argument("--email", default="", help="Email address (receives analyst digests).")
        parser.add_argument(
            "--password-file",
            type=Path,
            help="File holding the password. Without it the account gets no usable password.",
        )
        parser.add_argument(
            "--totp",
            action="store_true",
            help="Enrol a new TOTP second factor (replacing any other) and print its otpauth:// URI alone "
            "on the last line, for the analyst's authenticator app. Without it the analyst enrols at "
            "their first login.",
        )
        parser.add_argument(
            "--update",
            action="store_true",
            help="Reset role/password of an existing user instead of failing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        user_model = get_user_model()
        platform = None
        if options["platform"]:
            platform = Platform.objects.filter(slug=options["platform"]).first()
            if platform is None:
                raise CommandError(f"--platform: no platform with slug {options['platform']!r}")
        if options["email"]:
            try:
                validate_email(options["email"])
            except ValidationError:
                raise CommandError(f"--email: {options['email']!r} is not a valid email address") from None
        password = None
        if options["password_file"]:
            try:
                password = options["password_file"].read_text().strip()
            except OSError as exc:
                raise CommandError(
                    f"--password-file: cannot read {options['password_file']} ({exc.strerror})"
                ) from None
            if not password:
                raise CommandError("--password-file: the file is empty")
        existing = user_model.objects.filter(username=username).first()
        if existing and not options["update"]:
            raise CommandError(f"user {username!r} already exists (use --update to reset role and password)")
        user = existing or user_model(username=username)
        if password is not None:
            try:
                validate_password(password, user)
            except ValidationError as exc:
                raise CommandError("--password-file: " + " ".join(exc.messages)) from None
        with transaction.atomic():
            user.email = options["email"] or user.email
            user.is_staff = True
            user.is_active = True
            if password is not None:
                user.set_password(password)
            elif not existing:
                user.set_unusable_password()
            user.save()
            assign_role(user, platform)
        role = f"partner analyst of {platform.slug}" if platform else "exchange analyst"
        self.stdout.write(f"{'Updated' if existing else 'Created'} {role} {username}.")
        if options["totp"]:
            device = do_replace_totp_device(user, "create_analyst")
            self.stdout.write(f"TOTP secret (hand it to {username} privately; shown only now):")
            self.stdout.write(device.config_url)
