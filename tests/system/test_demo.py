"""The README's first command, as a newcomer runs it: `manage.py demo` on a fresh embedded database finds every
planted cross-platform ring (the one linked only by a reused product photo and a store name, and the one linked
only by a falsified letter of authorisation edited for each member, too), prints a walk-through without the
server's log lines interleaved, and names the address `make demo` serves on (issue 19, item 10). Runs in the
SQLite pass only: the demo is the embedded default's job, and it brings its own database file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.server import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the demo runs on the embedded SQLite"
)
def test_demo_finds_every_planted_ring_quietly_and_names_the_served_address(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "EXCHANGE_TASK_MODE", "SECRET_KEY", "EXCHANGE_PEPPERS"}
    }
    env.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        EMAIL_FILE_PATH=str(tmp_path / "outbox"),
    )
    run = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--url",
            "http://0.0.0.0:8123",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = re.search(
        r"(\d+) cross-platform clusters found; (\d+) cross-platform rings were planted", run.stdout
    )
    assert found and found.group(1) == found.group(2) and int(found.group(1)) >= 12, run.stdout
    # The ring linked only by a reused photo (each platform's copy cropped, resized, overlaid and re-encoded
    # differently) and a store name is one cluster, in the table and named on its own line (issue 13).
    label = r"Ring \d+: reused product photo \+ store name"
    assert re.search(rf"^ +\d+ +3 +3 +\d+  image, store_name +{label}$", run.stdout, re.MULTILINE), run.stdout
    assert re.search(
        rf"photo ring: found as cluster \d+, all 3 sellers on 3 platforms \({label}\)", run.stdout
    ), run.stdout
    # So is the ring whose only shared evidence is one falsified letter, edited for each member: near-duplicates
    # by their keyed MinHashes (the client has the consortium key), never the same file (issue 13).
    label = r"Ring \d+: falsified authorisation letter: new company, date, number per copy"
    assert re.search(rf"^ +\d+ +3 +3 +\d+  document +{label}$", run.stdout, re.MULTILINE), run.stdout
    assert re.search(
        rf"letter ring: found as cluster \d+, all 3 sellers on 3 platforms \({label}\)", run.stdout
    ), run.stdout
    assert "0 rows rejected by the client" in run.stdout
    assert "admin: http://0.0.0.0:8123/admin/" in run.stdout
    assert "API docs: http://0.0.0.0:8123/api/v1/docs/" in run.stdout
    assert "8000" not in run.stdout
    # An appeal with a forged letter that another platform reported falsified is flagged.
    assert re.search(r"appeals: .* reported falsified on 1 other platform\(s\), needs attention", run.stdout)
    # The structured INFO lines (submission accepted, recluster, key created) stay out of the walk-through.
    assert not [line for line in run.stderr.splitlines() if "level=INFO" in line], run.stderr[-2000:]
    assert not [line for line in run.stdout.splitlines() if "level=" in line]
    sent = re.search(r"reports: queued (\d+), sent (\d+), to retry 0, failed 0", run.stdout)
    assert sent and int(sent.group(2)) == int(sent.group(1)) >= 5, run.stdout  # one per platform at least
    assert any((tmp_path / "outbox").iterdir())
    # The first marketplace's webhook events reach the demo's receiver, every signature verified.
    hooks = re.search(
        r"webhooks: sent (\d+), not sent 0; the receiver verified (\d+) event\(s\), refused 0", run.stdout
    )
    assert hooks and hooks.group(1) == hooks.group(2) and int(hooks.group(1)) >= 5, run.stdout
    # Among them: another platform's opinion on its riskiest cluster, and a report there overturned on appeal.
    for event_type in ("cluster.joined", "cluster.opinion_added", "report.overturned"):
        assert re.search(rf"^    {re.escape(event_type)} +[1-9]", run.stdout, re.MULTILINE), (
            event_type,
            run.stdout,
        )
