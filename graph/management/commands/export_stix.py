"""`manage.py export_stix [--cluster REF ...] [--platform SLUG] [--tlp LEVEL] OUT.json`: a STIX 2.1 bundle.

Without --platform: the exchange analysts' full export of the live clusters (or the named ones, dissolved
included): every member's seller_ref and every platform's name. With --platform: exactly what that platform's
TAXII collection holds for those clusters (its own sellers only, others as counts), marked with its TLP.
Either way the export is recorded in the audit log with the cluster references it contains.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import AuditEntry, Platform
from graph import stix
from graph.exports import full_cluster_data, partner_cluster_data
from graph.models import ActorCluster


class Command(BaseCommand):
    help = "Write actor clusters as a STIX 2.1 bundle (in full, or as one platform sees them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", help="The bundle's file ('-' for standard output).")
        parser.add_argument(
            "--cluster", action="append", default=[], metavar="REF", help="A cluster reference (repeatable)."
        )
        parser.add_argument("--platform", metavar="SLUG", help="Export as this platform sees its clusters.")
        parser.add_argument(
            "--tlp",
            choices=sorted(stix.TLP_MARKING_IDS),
            help=f"TLP marking (default: the platform's setting, or {stix.DEFAULT_TLP} for a full export).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        clusters = ActorCluster.objects.ranked()
        if options["cluster"]:
            clusters = clusters.filter(ref__in=options["cluster"])
            missing = sorted(set(options["cluster"]) - set(clusters.values_list("ref", flat=True)))
            if missing:
                raise CommandError(f"No such cluster: {', '.join(missing)}")
        else:
            clusters = clusters.live()
        platform = None
        if options["platform"]:
            platform = Platform.objects.filter(slug=options["platform"]).first()
            if platform is None:
                raise CommandError(f"No such platform: {options['platform']}")
            clusters = clusters.live().seen_by(platform)  # the partner's view, as over TAXII
            if options["cluster"] and len(clusters) != len(options["cluster"]):
                raise CommandError(f"Not every named cluster is a live cluster of {platform.slug}'s sellers.")
            tlp = options["tlp"] or platform.stix_tlp
            data = [partner_cluster_data(cluster, platform) for cluster in clusters]
        else:
            tlp = options["tlp"] or stix.DEFAULT_TLP
            data = full_cluster_data(clusters)
        bundle = stix.bundle(data, tlp)
        text = json.dumps(bundle, indent=2)
        if options["out"] == "-":
            self.stdout.write(text)
        else:
            Path(options["out"]).write_text(text + "\n", encoding="utf-8")
        AuditEntry.objects.record(
            "stix_export",
            "manage.py export_stix",
            platform,
            view=platform.slug if platform else "full",
            tlp=tlp,
            refs=[cluster.ref for cluster in data],
        )
        if options["out"] != "-":
            self.stdout.write(
                f"Wrote {len(data)} cluster(s), {len(bundle['objects'])} objects, to {options['out']}"
            )
