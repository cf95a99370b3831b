"""Document rows of the submission CSV (issue 13): a PDF or text file, by path, fingerprinted on the partner's
side: only the file's SHA-256 and the MinHash of its text, keyed with the consortium key, are sent."""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from pathlib import Path

import pytest

from exchange import documents as dm
from exchange.client import read_submission_file
from exchange.client.cli import main
from exchange.client.csvinput import CSV_KINDS
from exchange.client.documents import CONSORTIUM_KEY_ENV
from exchange.normalization import transport_hash
from fixtures import documents as fx
from tests.client.helpers import sent_indicators, write

HEADER = "seller_ref,status,reasons,reported_at,kind,value\n"
SELLER = "s-1,confirmed,falsified_documents,2025-01-31T12:00:00Z"
EMAIL = "counterfeiter.alice@example.com"
KEY = bytes(range(100, 132))


def csv_text(*rows: tuple[str, str], seller: str = SELLER) -> str:
    return HEADER + "".join(f"{seller},{kind},{value}\n" for kind, value in rows)


@pytest.fixture
def letter(tmp_path: Path) -> Path:
    """A letter of authorisation as a PDF in a folder beside the CSV: ``docs/letter.pdf``."""
    (tmp_path / "docs").mkdir()
    return fx.write_pdf(fx.document(5), tmp_path / "docs" / "letter.pdf")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "consortium.key"
    path.write_text(KEY.hex() + "\n", encoding="ascii")
    return path


def test_document_row_sends_the_files_sha256_and_keyed_minhash(tmp_path: Path, letter: Path) -> None:
    text_file = tmp_path / "invoice.txt"
    text_file.write_text(fx.render_text(fx.document(6, "invoice")), encoding="utf-8")
    path = write(tmp_path, csv_text(("document", "docs/letter.pdf"), ("document", str(text_file))))

    result = read_submission_file(path, consortium_key=KEY)

    assert result.rejected == []
    assert sent_indicators(result) == [
        dm.fingerprint(letter, KEY).to_payload(),
        dm.fingerprint(text_file, KEY).to_payload(),
    ]
    assert sent_indicators(result)[0] == {
        "kind": "document",
        "hash": dm.hashlib.sha256(letter.read_bytes()).hexdigest(),
        "minhash": dm.fingerprint(letter, KEY).minhash,
    }
    assert "document" in CSV_KINDS


def test_the_same_file_given_twice_is_sent_once(tmp_path: Path, letter: Path) -> None:
    path = write(tmp_path, csv_text(("document", "docs/letter.pdf"), ("document", str(letter))))
    result = read_submission_file(path, consortium_key=KEY)
    assert len(sent_indicators(result)) == 1 and result.duplicate_indicators == 1


def test_a_near_copy_sends_another_hash_and_a_matching_minhash(tmp_path: Path, letter: Path) -> None:
    fx.write_pdf(fx.edited(fx.document(5), random.Random(2)), tmp_path / "docs" / "copy.pdf")
    path = write(tmp_path, csv_text(("document", "docs/letter.pdf"), ("document", "docs/copy.pdf")))
    original, copy = sent_indicators(read_submission_file(path, consortium_key=KEY))
    assert original["hash"] != copy["hash"]
    assert dm.jaccard_estimate(str(original["minhash"]), str(copy["minhash"])) >= dm.DEFAULT_JACCARD_THRESHOLD


def test_document_rows_without_the_consortium_key_are_rejected_naming_the_option(
    tmp_path: Path, letter: Path
) -> None:
    path = write(tmp_path, csv_text(("email", EMAIL), ("document", "docs/letter.pdf")))
    result = read_submission_file(path)
    [rejected] = result.rejected
    assert rejected.line == 3
    assert rejected.reason.startswith("document rejected (no_consortium_key): ")
    assert "--consortium-key-file" in rejected.reason and CONSORTIUM_KEY_ENV in rejected.reason
    assert result.sellers == []  # held back, as for any rejected row


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _textless_pdf(path: Path) -> None:
    fx.write_html_pdf('<div style="width:4cm;height:4cm;background:#222"></div>', path)


def _png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (50, 50), "white").save(path)


def _office(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04 counterfeiter.alice@example.com")


def _short(path: Path) -> None:
    path.write_text(f"Contact {EMAIL} for the goods.", encoding="utf-8")


BAD_FILES = {
    "empty.pdf": (_empty, "empty"),
    "scan.pdf": (_textless_pdf, "no_text"),
    "scan.png": (_png, "image_document"),
    "letter.docx": (_office, "unsupported_type"),
    "note.txt": (_short, "too_little_text"),
    "missing.pdf": (lambda path: None, "unreadable"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_document_that_cannot_be_fingerprinted_rejects_its_row_by_line(tmp_path: Path, name: str) -> None:
    make, reason = BAD_FILES[name]
    make(tmp_path / name)
    path = write(tmp_path, csv_text(("email", EMAIL), ("document", name)))

    result = read_submission_file(path, consortium_key=KEY)

    [rejected] = result.rejected
    assert (rejected.line, rejected.seller_ref) == (3, "s-1")
    assert rejected.reason.startswith(f"document rejected ({reason}): ")
    assert "alice" not in rejected.reason  # never the file's contents
    sent = read_submission_file(path, send_valid_rows=True, consortium_key=KEY)
    assert sent_indicators(sent) == [{"kind": "email", "hash": transport_hash("email", EMAIL)}]


def test_a_url_is_not_downloaded_as_a_document(tmp_path: Path) -> None:
    path = write(tmp_path, csv_text(("document", "https://example.com/letter.pdf")))
    [rejected] = read_submission_file(path, consortium_key=KEY).rejected
    assert rejected.reason.startswith("document rejected (not_a_file): ")


# --- the command line ---------------------------------------------------------------------------------------


def test_dry_run_payloads_carry_the_fingerprint_and_nothing_of_the_document(
    tmp_path: Path, letter: Path, key_file: Path
) -> None:
    csv_path = write(tmp_path, csv_text(("document", "docs/letter.pdf"), ("email", EMAIL)))
    payloads_file = tmp_path / "payloads.json"
    out, err = io.StringIO(), io.StringIO()

    code = main(
        [
            "submit",
            "--dry-run",
            "--consortium-key-file",
            str(key_file),
            "--payloads-file",
            str(payloads_file),
            str(csv_path),
        ],
        stdout=out,
        stderr=err,
    )

    assert code == 0, out.getvalue() + err.getvalue()
    sent = payloads_file.read_text(encoding="utf-8")
    [batch] = json.loads(sent)
    [seller] = batch["sellers"]
    assert seller["indicators"][0] == dm.fingerprint(letter, KEY).to_payload()
    everything = sent + out.getvalue() + err.getvalue()
    # nothing of the document: apart from the hex hashes, the payloads hold only the request's own field names
    # and values, no word of the text; nor its bytes, its path or the key anywhere
    text = dm.extract_text(letter)
    vocabulary = set(re.findall(r"[a-z_]+", re.sub(r"[0-9a-f]{64,}", " ", sent)))
    assert vocabulary == {
        "sellers", "seller_ref", "s", "status", "confirmed", "reasons", "falsified_documents", "reported_at",
        "indicators", "kind", "document", "hash", "minhash", "email",
    }  # fmt: skip
    assert "falsified" not in dm.normalize_text(text)
    assert text[:40] not in everything and "letter.pdf" not in everything and "docs/" not in everything
    raw = letter.read_bytes()
    assert raw[:64].hex() not in everything and raw[200:240].decode("latin-1") not in everything
    assert KEY.hex() not in everything and EMAIL not in everything


def test_the_key_file_can_be_named_by_the_environment(
    tmp_path: Path, letter: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_path = write(tmp_path, csv_text(("document", "docs/letter.pdf")))
    payloads_file = tmp_path / "payloads.json"
    monkeypatch.setenv(CONSORTIUM_KEY_ENV, str(key_file))
    out, err = io.StringIO(), io.StringIO()
    args = ["submit", "--dry-run", "--payloads-file", str(payloads_file), str(csv_path)]
    assert main(args, stdout=out, stderr=err) == 0, out.getvalue() + err.getvalue()
    [batch] = json.loads(payloads_file.read_text(encoding="utf-8"))
    assert batch["sellers"][0]["indicators"] == [dm.fingerprint(letter, KEY).to_payload()]


def test_dry_run_without_a_key_names_the_rejected_document_row(tmp_path: Path, letter: Path) -> None:
    csv_path = write(tmp_path, csv_text(("email", EMAIL), ("document", "docs/letter.pdf")))
    out, err = io.StringIO(), io.StringIO()
    assert main(["submit", "--dry-run", str(csv_path)], stdout=out, stderr=err) == 3
    assert (
        "  line 3 (seller 's-1'): document rejected (no_consortium_key): document rows need" in out.getvalue()
    )


@pytest.mark.parametrize("content", [b"too short", b"abcd" * 8 + b"\n"], ids=["short", "31-hex-bytes"])
def test_an_unusable_key_file_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    key = tmp_path / "bad.key"
    key.write_bytes(content)
    csv_path = write(tmp_path, csv_text(("email", EMAIL)))
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["submit", "--dry-run", "--consortium-key-file", str(key), str(csv_path)], stdout=out, stderr=err
    )
    assert code == 2
    assert "--consortium-key-file: the consortium key must be at least 32 bytes" in err.getvalue()


def test_submit_help_explains_document_rows() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited, contextlib.redirect_stdout(out):
        main(["submit", "--help"])
    assert exited.value.code == 0
    text = " ".join(out.getvalue().split())
    assert "A document row's value is a PDF or UTF-8 text file's path" in text
    assert "--consortium-key-file PATH" in text and CONSORTIUM_KEY_ENV in text
