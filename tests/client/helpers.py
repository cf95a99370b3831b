"""What the client's tests share: running the command line in-process, writing a CSV, and the indicators a
read CSV would send."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from exchange.client.cli import main
from exchange.client.csvinput import CsvResult


def run_cli(*argv: str) -> tuple[int, str, str]:
    """The client's command line run in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, text: str, name: str = "reports.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def sent_indicators(result: CsvResult) -> list[dict[str, Any]]:
    """Every indicator the read CSV's sellers would send, as in the request body."""
    return [indicator for seller in result.sellers for indicator in seller.to_payload()["indicators"]]
