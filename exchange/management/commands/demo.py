"""`manage.py demo`: bring the embedded (SQLite) exchange to life for a newcomer. Safe to rerun."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from accounts.models import AnalystProfile, ApiKey, Platform
from accounts.roles import EXCHANGE_ANALYST, PARTNER_ANALYST

DEMO_PLATFORMS = [("bazaar-north", "Bazaar North", "DE"), ("quickcart", "QuickCart", "GB")]
DEMO_PASSWORD = "exchange-demo"  # noqa: S105 - demo accounts on a local, DEBUG-only database


class Command(BaseCommand):
    help = "Set up the demo: migrate, create demo platforms, API keys and analysts (credentials printed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", type=Path, default=Path(settings.BASE_DIR) / "var" / "demo")

    def handle(self, *args: Any, **options: Any) -> None:
        demo_dir: Path = options["dir"]
        demo_dir.mkdir(parents=True, exist_ok=True)
        self.step("Migrating the database")
        call_command("migrate", verbosity=0)
        self.step("Creating demo platforms and API keys")
        for slug, name, region in DEMO_PLATFORMS:
            platform, _ = Platform.objects.update_or_create(
                slug=slug,
                defaults={
                    "name": name,
                    "default_region": region,
                    "report_recipients": [f"tns@{slug}.example"],
                },
            )
            key_file = demo_dir / f"{slug}.key"
            self.ensure_key(platform, key_file)
            self.stdout.write(f"  {name:<14} key in {key_file}")
        self.step("Creating analyst accounts")
        first = Platform.objects.get(slug=DEMO_PLATFORMS[0][0])
        self.ensure_analyst("exchange-analyst", None)
        self.ensure_analyst("partner-analyst", first)
        self.stdout.write(f"  exchange analyst: exchange-analyst / {DEMO_PASSWORD}")
        self.stdout.write(f"  partner analyst ({first.name}): partner-analyst / {DEMO_PASSWORD}")

    def step(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))

    @staticmethod
    def ensure_key(platform: Platform, key_file: Path) -> str:
        if key_file.exists():
            full_key = key_file.read_text().strip()
            lookup = ApiKey.parse(full_key)
            key = ApiKey.objects.usable().filter(lookup=lookup, platform=platform).first() if lookup else None
            if key is not None and key.matches(full_key):
                return full_key
        _, full_key = ApiKey.generate(platform, ["submit", "lookup", "read"], name="demo")
        key_file.write_text(full_key + "\n")
        key_file.chmod(0o600)
        return full_key

    @staticmethod
    def ensure_analyst(username: str, platform: Platform | None) -> None:
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = True
        user.email = f"{username}@exchange.example"
        user.set_password(DEMO_PASSWORD)
        user.save()
        AnalystProfile.objects.update_or_create(user=user, defaults={"platform": platform})
        user.groups.set([Group.objects.get(name=PARTNER_ANALYST if platform else EXCHANGE_ANALYST)])
