"""`manage.py import_stix BUNDLE.json --platform SLUG [--status suspected] [--reason counterfeit ...]`.

Imports a STIX 2.1 bundle of indicators (for example a brand's list of known counterfeit storefront domains)
as reports of an "external feed" platform (create it first: `manage.py create_platform brand-feed --name ...`).
Each indicator becomes one seller of that platform, `seller_ref` = the indicator's STIX id, reported at its
`valid_from`. The values are normalised and hashed here, as the partner client does, so only transport hashes
go into the submission, which takes the partner API's path: the same validation (`ingest.parse_submission`)
and storage (`ingest.do_submit`, keyed tokens only). All or nothing: any bad indicator refuses the whole
bundle; the same bundle imported twice is stored once (idempotency keys derived from the content).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditEntry, Platform
from exchange import ingest
from exchange.normalization import NormalizationError, transport_hash
from graph import stix


class Command(BaseCommand):
    help = "Import a STIX 2.1 bundle of indicators as reports of an external-feed platform."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bundle", help="The STIX 2.1 bundle (JSON file).")
        parser.add_argument("--platform", required=True, metavar="SLUG", help="The external-feed platform.")
        parser.add_argument("--status", choices=("suspected", "confirmed"), default="suspected")
        parser.add_argument(
            "--reason",
            action="append",
            dest="reasons",
            metavar="CODE",
            help="Reason code (default counterfeit).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        platform = Platform.objects.filter(slug=options["platform"]).first()
        if platform is None:
            raise CommandError(f"No such platform: {options['platform']} (create it with create_platform)")
        try:
            bundle = json.loads(Path(options["bundle"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CommandError(f"Cannot read {options['bundle']}: {error}") from None
        try:
            indicators = stix.indicators_of(bundle)
        except stix.StixImportError as error:
            raise CommandError("Nothing imported:\n" + "\n".join(error.problems)) from None

        sellers, problems = [], []
        for indicator in indicators:
            try:
                hashed = transport_hash(indicator.kind, indicator.value, platform.default_region or None)
            except NormalizationError as error:
                problems.append(f"{indicator.stix_id}: {error}")
                continue
            sellers.append(
                {
                    "seller_ref": indicator.stix_id,
                    "status": options["status"],
                    "reasons": options["reasons"] or ["counterfeit"],
                    "reported_at": indicator.valid_from,
                    "indicators": [{"kind": indicator.kind, "hash": hashed}],
                }
            )
        if problems:
            raise CommandError("Nothing imported:\n" + "\n".join(problems))

        size = settings.EXCHANGE_MAX_BATCH_SELLERS
        batches = [{"sellers": sellers[i : i + size]} for i in range(0, len(sellers), size)]
        now = timezone.now()
        for number, batch in enumerate(batches):
            try:  # every batch is checked before any is stored
                ingest.parse_submission(batch, now)
            except ingest.BatchInvalid as error:
                raise CommandError(f"Nothing imported: batch {number}: {error.errors}") from None
        created = 0
        with transaction.atomic():
            for batch in batches:
                body = json.dumps(batch, sort_keys=True).encode()
                key = "stix-import-" + hashlib.sha256(body).hexdigest()[:48]
                result = ingest.do_submit(platform, None, key, body, batch)
                created += 0 if result.replayed else int(result.submission.response["sellers_created"])
            AuditEntry.objects.record(
                "stix_import",
                "manage.py import_stix",
                platform,
                bundle=bundle.get("id", ""),
                indicators=len(sellers),
                sellers_created=created,
            )
        self.stdout.write(
            f"Imported {len(sellers)} indicator(s) as {platform.slug} reports ({created} new seller(s))."
        )
