from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.actions import do_remove_webhook, do_rotate_webhook_secret, do_set_webhook
from accounts.models import Platform
from accounts.webhooks import WebhookUrlError


class Command(BaseCommand):
    help = (
        "Register a platform's webhook URL (https://, public addresses only), rotate its signing secret or "
        "remove it. A new secret is printed alone on the last line, once: the exchange cannot show it again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The platform's slug.")
        parser.add_argument("url", nargs="?", help="The webhook URL, e.g. https://tns.example.com/exchange.")
        parser.add_argument("--remove", action="store_true", help="Stop sending webhooks; forget the secret.")
        parser.add_argument(
            "--rotate-secret",
            action="store_true",
            help="Draw a new signing secret (the old one stops signing at once) and print it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        platform = Platform.objects.filter(slug=options["slug"]).first()
        if platform is None:
            raise CommandError(f"no platform with slug {options['slug']!r}")
        url, remove, rotate = options["url"], options["remove"], options["rotate_secret"]
        if remove and (url or rotate):
            raise CommandError("--remove takes no URL and cannot be combined with --rotate-secret")
        if not (url or remove or rotate):
            raise CommandError("give a URL, --rotate-secret or --remove")
        if remove:
            removed = do_remove_webhook(platform, actor="system")
            self.stdout.write(
                f"Removed the webhook of {platform.slug}" if removed else f"{platform.slug} had no webhook"
            )
            return
        secret = None
        if url:
            try:
                secret = do_set_webhook(platform, url, actor="system")
            except WebhookUrlError as error:
                raise CommandError(str(error)) from None
            self.stdout.write(f"Webhook of {platform.slug}: {platform.webhook_url}")
        if rotate and secret is None:
            try:
                secret = do_rotate_webhook_secret(platform, actor="system")
            except ValueError as error:
                raise CommandError(str(error)) from None
        if secret is not None:
            self.stdout.write(
                "Signing secret (shown once; give it to the platform over a secure channel; it verifies the "
                "Exchange-Signature header):"
            )
            self.stdout.write(secret)
