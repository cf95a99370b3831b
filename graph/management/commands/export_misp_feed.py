"""`manage.py export_misp_feed DIR [--cluster REF ...] [--platform SLUG] [--since DATE] [--tlp LEVEL] [--force]`.

Writes a MISP feed (graph/misp.py: MISP core format, `manifest.json` + one `<uuid>.json` event per live
cross-platform cluster) for the exchange analysts' own MISP. Without --platform: the full view (every member's
seller_ref and every platform's name, the analysts' status). With --platform: what that platform's partner API
and TAXII collection show (its own sellers only, other platforms as counts), marked with its TLP.

All or nothing: the feed is written into a new directory beside DIR and moved into place whole, so DIR holds
the previous feed or the new one, never half of one. DIR must be empty or absent, or with --force hold only a
feed's files (which the new feed replaces). The export is recorded in the audit log with the cluster references
it contains.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import AuditEntry, Platform
from graph import misp, stix
from graph.exports import full_cluster_data, partner_cluster_data
from graph.models import ActorCluster

FEED_FILE = re.compile(
    r"manifest\.json|hashes\.csv|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json"
)
PROGRESS_EVERY = 500


class Command(BaseCommand):
    help = "Write the live cross-platform actor clusters as a MISP feed directory (MISP core format)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", help="The feed's directory (absent or empty; see --force).")
        parser.add_argument(
            "--cluster", action="append", default=[], metavar="REF", help="A cluster reference (repeatable)."
        )
        parser.add_argument("--platform", metavar="SLUG", help="Export as this platform sees its clusters.")
        parser.add_argument(
            "--since",
            metavar="DATE",
            help="Only clusters that changed at or after DATE (YYYY-MM-DD, UTC, or an ISO 8601 time).",
        )
        parser.add_argument(
            "--tlp",
            choices=sorted(stix.TLP_MARKING_IDS),
            help=f"TLP tag (default: the platform's setting, or {stix.DEFAULT_TLP} for the full view).",
        )
        parser.add_argument(
            "--force", action="store_true", help="Replace the MISP feed that DIR already holds."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        target = Path(options["dir"])
        since = _since(options["since"])
        replace = _check_target(target, options["force"])
        platform, clusters = self._clusters(options["cluster"], options["platform"])
        if platform is not None:
            view = platform.slug
            tlp = options["tlp"] or platform.stix_tlp
            data = [partner_cluster_data(cluster, platform) for cluster in clusters]
        else:
            view = "full"
            tlp = options["tlp"] or stix.DEFAULT_TLP
            data = full_cluster_data(clusters)
        if since is not None:
            data = [cluster for cluster in data if misp.last_change(cluster) >= since]

        staging = _staging_dir(target)
        self.stderr.write(f"Writing {len(data)} event(s) ({view} view) to {target}")
        try:
            manifest: dict[str, Any] = {}
            attributes = 0
            for number, cluster in enumerate(data, start=1):
                event = misp.event(cluster, tlp)
                manifest.update(misp.manifest_entry(event))
                attributes += len(event["Event"]["Attribute"])
                _write_json(staging / f"{event['Event']['uuid']}.json", event)
                if number % PROGRESS_EVERY == 0:
                    self.stderr.write(f"  {number}/{len(data)} events written")
            _write_json(staging / "manifest.json", manifest)
            with transaction.atomic():
                AuditEntry.objects.record(
                    "misp_feed_export",
                    "manage.py export_misp_feed",
                    platform,
                    view=view,
                    tlp=tlp,
                    since=since.isoformat() if since else None,
                    refs=[cluster.ref for cluster in data],
                )
                _move_into_place(staging, target, replace)  # an error here rolls the audit entry back
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already unless something failed
        self.stdout.write(
            f"Wrote {len(data)} event(s) ({attributes} attributes) and manifest.json to {target} "
            f"(view: {view}, TLP:{tlp.upper()})"
        )

    def _clusters(self, refs: list[str], slug: str | None) -> tuple[Platform | None, list[ActorCluster]]:
        """The platform (None for the full view) and the clusters to export: the live cross-platform ones (of
        the platform's sellers), or exactly the named ones, each of which must be such a cluster."""
        clusters = ActorCluster.objects.ranked()
        if refs:
            known = set(clusters.filter(ref__in=refs).values_list("ref", flat=True))
            if missing := sorted(set(refs) - known):
                raise CommandError(f"No such cluster: {', '.join(missing)}")
        platform = None
        clusters = clusters.live().cross_platform()
        if slug:
            platform = Platform.objects.filter(slug=slug).first()
            if platform is None:
                raise CommandError(f"No such platform: {slug}")
            clusters = clusters.containing_platform(platform)
        if refs:
            clusters = clusters.filter(ref__in=refs)
            if outside := sorted(set(refs) - {cluster.ref for cluster in clusters}):
                whose = f" of {platform.slug}'s sellers" if platform else ""
                raise CommandError(
                    f"Not a live cross-platform cluster{whose} (a feed holds only those): {', '.join(outside)}"
                )
        return platform, list(clusters)


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = parse_datetime(raw)
        day = None if moment else parse_date(raw)
    except ValueError:
        moment = day = None
    if day is not None:
        return datetime.combine(day, time(), tzinfo=UTC)
    if moment is None:
        raise CommandError(f"--since {raw!r} is not a date (YYYY-MM-DD) or an ISO 8601 time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check_target(target: Path, force: bool) -> bool:
    """Whether `target` holds a feed to replace; CommandError when it may not be written."""
    if not target.exists():
        if not target.parent.is_dir():
            raise CommandError(f"{target}: its parent directory {target.parent} does not exist")
        return False
    if not target.is_dir():
        raise CommandError(f"{target} is not a directory")
    entries = sorted(entry.name for entry in target.iterdir())
    if not entries:
        return True
    if not force:
        raise CommandError(f"{target} is not empty (--force replaces a MISP feed written there before)")
    if foreign := [name for name in entries if not FEED_FILE.fullmatch(name)]:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise CommandError(f"{target} holds files that are not a MISP feed's, left untouched: {shown}")
    return True


def _staging_dir(target: Path) -> Path:
    """A new directory beside `target` (same file system, so the move is a rename) with the permissions a
    directory made by mkdir would have, or the old feed's."""
    parent = target.absolute().parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=parent))
        if target.is_dir():
            mode = target.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o777 & ~umask
        staging.chmod(mode)
    except OSError as error:
        raise CommandError(f"Cannot write beside {target} in {parent}: {error.strerror}") from None
    return staging


def _write_json(path: Path, content: Any) -> None:
    try:
        path.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as error:
        raise CommandError(f"Cannot write {path.name}: {error.strerror}") from None


def _move_into_place(staging: Path, target: Path, replace: bool) -> None:
    """Rename the finished feed to `target`; an old one (or an empty directory) is moved aside first and
    removed after, or put back if the new one cannot take its place."""
    try:
        if not replace:
            staging.rename(target)
            return
        old = staging.with_suffix(".old")
        target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            old.rename(target)
            raise
        shutil.rmtree(old)
    except OSError as error:
        raise CommandError(f"Cannot move the feed into {target}: {error.strerror}") from None
