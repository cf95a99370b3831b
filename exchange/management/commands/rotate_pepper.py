from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditEntry
from exchange.hashing import rekey
from exchange.models import AppealDocument, Indicator, KeyState

CHUNK = 5000


class Command(BaseCommand):
    help = (
        "Re-key every stored token to the highest pepper version in EXCHANGE_PEPPERS by chaining "
        "(token = HMAC(new pepper, old token)). Add the new version to EXCHANGE_PEPPERS first, keep the old "
        "ones, then run this. Submissions wait while it runs; partners resubmit nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report what would be re-keyed.")

    def handle(self, *args: Any, **options: Any) -> None:
        peppers = settings.EXCHANGE_PEPPERS
        target = max(peppers)
        started = time.monotonic()
        with transaction.atomic():
            state = KeyState.objects.for_rotation()
            current = state.current_version
            if current == target:
                self.stdout.write(f"Tokens are already keyed with pepper version {target}; nothing to do.")
                return
            if current > target:
                raise CommandError(
                    f"stored tokens use pepper version {current}, but EXCHANGE_PEPPERS only goes up to {target}"
                )
            missing = [v for v in range(current + 1, target + 1) if v not in peppers]
            if current not in peppers or missing:
                raise CommandError(f"EXCHANGE_PEPPERS must keep version {current} and every later one")
            total = Indicator.objects.count()
            documents = AppealDocument.objects.count()
            if options["dry_run"]:
                self.stdout.write(
                    f"Would re-key {total} indicators and {documents} appeal documents from version {current} "
                    f"to {target}."
                )
                return
            # Indicator and appeal document tokens are re-keyed. Submission.body_digest stays on the version it names in
            # digest_version: it only tells a retry from a reused Idempotency-Key, peppers are never dropped,
            # and new submissions already key their digest with the newest pepper.
            steps = [peppers[v] for v in range(current + 1, target + 1)]
            done = 0
            last_id = 0
            while True:
                chunk = list(
                    Indicator.objects.filter(id__gt=last_id).order_by("id").only("id", "token")[:CHUNK]
                )
                if not chunk:
                    break
                for indicator in chunk:
                    token = indicator.token
                    for pepper in steps:
                        token = rekey(token, pepper)
                    indicator.token = token
                    indicator.key_version = target
                Indicator.objects.bulk_update(chunk, ["token", "key_version"], batch_size=1000)
                done += len(chunk)
                last_id = chunk[-1].id
                self.stderr.write(f"\r  re-keyed {done}/{total}", ending="")
            # Appeal documents: a few per appeal, so one pass (they are matched by token like indicators).
            rekeyed = list(AppealDocument.objects.only("id", "token"))
            for document in rekeyed:
                for pepper in steps:
                    document.token = rekey(document.token, pepper)
                document.key_version = target
            AppealDocument.objects.bulk_update(rekeyed, ["token", "key_version"], batch_size=1000)
            state.current_version = target
            state.rotated_at = timezone.now()
            state.save(update_fields=["current_version", "rotated_at"])
            AuditEntry.objects.record(
                "pepper_rotated",
                "system",
                None,
                indicators=done,
                appeal_documents=len(rekeyed),
                to_version=target,
            )
        self.stderr.write("")
        self.stdout.write(
            f"Re-keyed {done} indicators and {len(rekeyed)} appeal documents from pepper version {current} to {target} "
            f"in {time.monotonic() - started:.1f} s."
        )
