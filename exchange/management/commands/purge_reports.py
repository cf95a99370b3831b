from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from exchange.retention import purge


class Command(BaseCommand):
    help = (
        "Delete reports retracted or expired more than EXCHANGE_PURGE_GRACE_DAYS ago, with their sightings "
        "and orphaned indicators. Leaves audit entries with counts only. Run daily (cron or the worker)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = purge(dry_run=options["dry_run"])
        verb = "Would purge" if options["dry_run"] else "Purged"
        self.stdout.write(
            f"{verb} {result.sellers} sellers, {result.sightings} sightings, {result.indicators} indicators "
            f"(grace period {settings.EXCHANGE_PURGE_GRACE_DAYS} days)."
        )
