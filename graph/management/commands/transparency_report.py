"""`manage.py transparency_report --period 2026 [--platform SLUG] [--out DIR]`: the consortium's transparency
report as HTML (with SVG charts) and CSV.

Without --platform: the consortium's figures only, the version to publish (`transparency-2026.html` and
`.csv`). With --platform: the consortium's figures and that platform's own, for that platform only
(`transparency-2026-SLUG.html` and `.csv`, so it never overwrites the public one). Audited.
"""

from __future__ import annotations

import os
import tempfile
from io import StringIO
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import AuditEntry, Platform
from graph.transparency import ACCEPTED_PERIODS, PeriodError, parse_period, write_csv
from graph.transparency_data import build_report, scope_label


class Command(BaseCommand):
    help = "Write the consortium's transparency report for a period as HTML (with charts) and CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help=f"The period: {ACCEPTED_PERIODS}.")
        parser.add_argument(
            "--platform", metavar="SLUG", help="Add this platform's own figures (for it only)."
        )
        parser.add_argument(
            "--out", default=".", metavar="DIR", help="Where to write the files (default: here)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        try:
            period = parse_period(options["period"], now)
        except PeriodError as error:
            raise CommandError(str(error)) from None
        shown: list[Platform] = []
        if options["platform"]:
            platform = Platform.objects.filter(slug=options["platform"]).first()
            if platform is None:
                raise CommandError(f"No such platform: {options['platform']}")
            shown = [platform]
        out = Path(options["out"])
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out {out} is not a directory")

        report = build_report(period, shown)
        html = render_to_string("transparency/report.html", {"report": report, "generated": now})
        table = StringIO()
        write_csv(report, table)
        stem = f"transparency-{period.label}" + (f"-{shown[0].slug}" if shown else "")
        try:
            out.mkdir(parents=True, exist_ok=True)
            written = [_write(out / f"{stem}.html", html), _write(out / f"{stem}.csv", table.getvalue())]
        except OSError as error:
            raise CommandError(f"cannot write to {out}: {error.strerror or error}") from None
        scope = scope_label(shown, all_platforms=False)
        AuditEntry.objects.record(
            "transparency_report",
            "manage.py transparency_report",
            shown[0] if shown else None,
            period=period.label,
            scope=scope,
            format="html+csv",
        )

        running = "" if period.complete else f", still running: as of {period.as_of:%Y-%m-%d %H:%M} UTC"
        self.stdout.write(
            f"Transparency report {period.label} ({period.start:%Y-%m-%d} to {period.last_day:%Y-%m-%d}"
            f"{running}); {scope}"
        )
        for column_index, column in enumerate(report.columns):
            self.stdout.write(f"{column.title}:")
            for row in report.rows:
                cell = row.cells[column_index]
                if row.part is None and cell.text:
                    self.stdout.write(f"  {row.figure.label}: {cell.text}")
        self.stdout.write(f"Wrote {written[0]} and {written[1]}")


def _write(path: Path, text: str) -> Path:
    """Write through a temporary file in the same directory: a failed run leaves no half-written report."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # a report to hand over, not a secret (mkstemp creates it 0600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
