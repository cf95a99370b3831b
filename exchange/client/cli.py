"""Command line of the reference partner client: ``python -m exchange.client COMMAND ...``, or
``exchange-client COMMAND ...`` where the client distribution (exchange/client/pyproject.toml) is installed.

Exit codes (``EXIT_CODES``, also in ``--help``): 0 success, 1 the exchange refused a batch or could not be
reached, 2 bad usage or unreadable input, 3 ``submit`` rejected rows (the rest was sent). Raw identifier
values and the API key are never printed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from exchange.client.api import ExchangeClient, ExchangeError, TransportError, file_sha256
from exchange.client.csvinput import (
    COLUMNS,
    CsvFormatError,
    CsvResult,
    Indicator,
    SellerReport,
    read_submission_file,
)
from exchange.client.documents import CONSORTIUM_KEY_ENV, DocumentHasher
from exchange.client.fuzzy import NO_KEY_HINT, FuzzyEncoder, FuzzyEncodingError
from exchange.client.images import DOWNLOAD_TIMEOUT, MAX_DOWNLOAD_BYTES, PhotoHasher
from exchange.client.submission import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PARALLEL,
    MAX_BATCH_SIZE,
    SubmitSummary,
    batched,
    submit_sellers,
    within_limits,
)
from exchange.contract import (
    APPEAL_OUTCOMES,
    DOCUMENT_KIND,
    FUZZY_WIRE_KINDS,
    IMAGE_KIND,
    MAX_APPEAL_DOCUMENTS,
    Limits,
)
from exchange.documents import MIN_CONSORTIUM_KEY_BYTES, DocumentError, read_consortium_key_file
from exchange.normalization import KINDS, NormalizationError, normalize, normalize_region, transport_hash
from exchange.perceptual import ImageHashError

MAX_PARALLEL = 32  # batches in flight from one client: more would only queue at the server
# What `lookup` screens: the spec's exact kinds (transport hashes), product photos, documents, and names and
# addresses as typed (fuzzy encodings). Documents and the fuzzy kinds are keyed with the consortium key.
LOOKUP_KINDS: tuple[str, ...] = (*KINDS, IMAGE_KIND, DOCUMENT_KIND, *FUZZY_WIRE_KINDS)
KEYED_LOOKUP_KINDS = frozenset({DOCUMENT_KIND, *FUZZY_WIRE_KINDS})
LOOKUP_SALT_BYTES = 16

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3

EXIT_CODES = f"""exit codes:
  {EXIT_OK}  every row was sent (with --dry-run: every row is valid)
  {EXIT_FAILED}  the exchange refused a batch or could not be reached (the summary names the failed
     batches); this wins over {EXIT_REJECTED}
  {EXIT_USAGE}  bad usage, or the CSV or key file cannot be read (nothing was sent)
  {EXIT_REJECTED}  submit: rows were rejected (the summary names them by line); the other sellers were
     sent, a seller with a rejected row only with --send-valid-rows (with --dry-run: would be)
"""


class UsageError(Exception):
    """Bad arguments or unreadable input; reported on stderr with exit code 2."""


MODULE_PROG = "python -m exchange.client"
SCRIPT_PROG = "exchange-client"


def main(
    argv: Sequence[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    *,
    prog: str = MODULE_PROG,
) -> int:
    """Run the command line; return the exit code. ``prog`` is the command named in usage and help."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.handler(args, out, err)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except ExchangeError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    return code


def console_script() -> int:
    """The ``exchange-client`` command of the installed distribution (as ``python -m exchange.client``)."""
    return main(prog=SCRIPT_PROG)


def build_parser(prog: str = MODULE_PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Reference partner client of the bad-actor intelligence exchange. Values are normalised "
        "and hashed locally (hashing spec v1), product photos with PDQ; only hashes are sent.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    hash_cmd = commands.add_parser("hash", help="print the transport hash of one value")
    hash_cmd.add_argument("--kind", required=True, choices=KINDS)
    _add_region(hash_cmd)
    hash_cmd.add_argument(
        "--show-normalized", action="store_true", help="also print the canonical form to stderr"
    )
    hash_cmd.add_argument("value")
    hash_cmd.set_defaults(handler=_hash)

    submit = commands.add_parser(
        "submit",
        help="normalise, hash and submit a CSV of seller reports",
        description="Read a CSV of seller reports (one row per indicator), normalise and hash every value\n"
        "locally, and submit the sellers in batches. A seller with a rejected row is held back (not\n"
        "sent) unless --send-valid-rows. The summary on stdout names every rejected row by line.\n\n"
        "An image row's value is a product photo: a file path (relative to the CSV file's folder) or\n"
        f"an https:// URL, downloaded here (at most {MAX_DOWNLOAD_BYTES // 2**20} MB, {DOWNLOAD_TIMEOUT:g} s; "
        "a private CA's certificate file in\n"
        "SSL_CERT_FILE). The photo is hashed here with PDQ; only its hashes are sent, never the\n"
        "photo, its path or its URL.\n\n"
        "A document row's value is a PDF or UTF-8 text file's path (relative to the CSV file's folder).\n"
        "Its text is extracted here (no OCR: a scan or an image is rejected) and only the file's SHA-256\n"
        "and a MinHash of its text keyed with the consortium key (--consortium-key-file, or the file\n"
        f"named by {CONSORTIUM_KEY_ENV}) are sent, never the file, its text or its path.\n\n"
        "A person_name or business_name row's value is the name as typed: only its fuzzy encoding, keyed\n"
        "with the consortium key, is sent (the key is required for these rows). With the key, an address\n"
        "row also sends the address's fuzzy encoding beside its hash; without it, the hash only.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection(submit, required=False)
    _add_region(submit)
    submit.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"sellers per request (default {DEFAULT_BATCH_SIZE}; at most what the exchange accepts, "
        f"by default {MAX_BATCH_SIZE})",
    )
    submit.add_argument(
        "--parallel",
        type=int,
        default=DEFAULT_PARALLEL,
        metavar="N",
        help=f"batches in flight at once, each on its own connection (default {DEFAULT_PARALLEL}; 1 sends "
        "them one after the other)",
    )
    submit.add_argument(
        "--send-valid-rows",
        action="store_true",
        help="send the valid rows of a seller some of whose rows were rejected (default: such a seller is "
        "not sent at all)",
    )
    submit.add_argument(
        "--dry-run",
        action="store_true",
        help="read, check and hash every row and print the summary, without contacting the exchange "
        "(needs neither --url nor --key-file; checks against the exchange's default limits)",
    )
    submit.add_argument(
        "--payloads-file",
        type=Path,
        metavar="FILE.json",
        help="with --dry-run: write the request bodies that would be sent (hashes only: no value, photo, "
        "document, path or URL) to this file",
    )
    submit.add_argument(
        "--consortium-key-file",
        type=Path,
        metavar="PATH",
        help=f"file holding the consortium key that the partners share, for document and name rows and "
        f"fuzzy addresses (at least "
        f"{MIN_CONSORTIUM_KEY_BYTES} bytes: {2 * MIN_CONSORTIUM_KEY_BYTES}+ hex digits, or raw bytes; default: "
        f"the file named by {CONSORTIUM_KEY_ENV})",
    )
    submit.add_argument("--quiet", action="store_true", help="no progress on stderr")
    submit.add_argument("csv_file", metavar="FILE.csv", help=f"UTF-8 with a header row: {','.join(COLUMNS)}")
    submit.set_defaults(handler=_submit)

    lookup = commands.add_parser(
        "lookup",
        help="screen values, photos, documents or names against other platforms' reports",
        description="Screen values against the sellers other platforms reported, and print the exchange's\n"
        "answer (JSON: per value, in order, match, other_platforms, reported_sellers, cluster, ...).\n"
        "Values are hashed here, as submit hashes a CSV row of the same kind; only hashes are sent.\n\n"
        "--kind image: each VALUE is a product photo's path or https:// URL; its PDQ hashes are sent.\n"
        "--kind document: each VALUE is a PDF or UTF-8 text file's path (e.g. a document submitted in\n"
        "an appeal); its SHA-256 and keyed MinHash are sent. The answer's reported_falsified says how\n"
        "many of the matching sellers were reported for falsified_documents.\n"
        "--kind person_name, business_name, shipping_address_fuzzy, return_address_fuzzy: each VALUE is\n"
        "a name or an address as typed; only its keyed fuzzy encoding is sent. (--kind shipping_address\n"
        "or return_address screens the exact address; run both kinds for both answers.)\n"
        "Documents and the fuzzy kinds need the consortium key: --consortium-key-file PATH, or the file\n"
        f"named by {CONSORTIUM_KEY_ENV}.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection(lookup, required=True)
    lookup.add_argument("--kind", required=True, choices=LOOKUP_KINDS)
    _add_region(lookup)
    lookup.add_argument(
        "--consortium-key-file",
        type=Path,
        metavar="PATH",
        help="file holding the consortium key, for documents and the fuzzy kinds (default: the file named by "
        f"{CONSORTIUM_KEY_ENV})",
    )
    lookup.add_argument(
        "values", nargs="+", metavar="VALUE", help="values, photos (path or https:// URL) or document paths"
    )
    lookup.set_defaults(handler=_lookup)

    retract = commands.add_parser("retract", help="retract the report of one of your sellers")
    _add_connection(retract, required=True)
    retract.add_argument("seller_ref", metavar="SELLER_REF")
    retract.add_argument("--reason", required=True, help="why the report is retracted (e.g. appeal upheld)")
    retract.set_defaults(handler=_retract)

    appeal = commands.add_parser(
        "appeal",
        help="record one of your sellers' appeal and its outcome (documents are hashed here, not sent)",
    )
    _add_connection(appeal, required=True)
    appeal.add_argument("seller_ref", metavar="SELLER_REF")
    appeal.add_argument(
        "--outcome",
        required=True,
        choices=APPEAL_OUTCOMES,
        help="upheld lifts the ban: the exchange retracts the report",
    )
    appeal.add_argument(
        "--document",
        action="append",
        default=[],
        metavar="FILE",
        help="a document of the appeal (repeatable)",
    )
    appeal.add_argument(
        "--falsified",
        action="append",
        default=[],
        metavar="FILE",
        help="a document of the appeal you found falsified (repeatable)",
    )
    appeal.add_argument("--note", help="your note (other platforms never see it)")
    appeal.set_defaults(handler=_appeal)
    return parser


def _add_region(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--default-region",
        metavar="CC",
        help="ISO country code for national phone numbers and tax ids without a country prefix (default: "
        "the platform's, from the exchange's /api/v1/me/, when --url and --key-file are given and it is "
        "not a dry run)",
    )


def _add_connection(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--url", required=required, help="the exchange's base URL, e.g. https://exchange.example.org"
    )
    parser.add_argument("--key-file", required=required, type=Path, help="file holding the API key")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--max-retries", type=int, default=5, help="retries per request (default 5)")


# --- commands --------------------------------------------------------------------------------------------


def _hash(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    region = _region(args)
    try:
        normalized = normalize(args.kind, args.value, region)
    except NormalizationError as exc:
        raise UsageError(f"value rejected: {exc}") from None
    if args.show_normalized:
        print(normalized, file=err)
    print(transport_hash(args.kind, args.value, region), file=out)
    return EXIT_OK


def _submit(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    region = _region(args)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be 1 or more")
    if not 1 <= args.parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel must be between 1 and {MAX_PARALLEL}")
    if args.payloads_file and not args.dry_run:
        raise UsageError("--payloads-file goes with --dry-run")
    if args.dry_run:
        return _dry_run(args, region, out, err)
    client: ExchangeClient | None = None
    limits: Limits | None = None
    if region is None and args.url and args.key_file:
        # The platform's default region, as the operator set it, hashes the national numbers.
        _check_readable(args.csv_file)
        client = _client(args, err)
        try:
            limits, region = client.settings()
        except TransportError as exc:
            print(f"nothing was sent: {exc}", file=err)
            return EXIT_FAILED
        if not args.quiet:
            _say_region(region, err)
    result = _read(args, region)

    client = client or _client(args, err)
    if limits is None:
        try:
            limits = client.limits()
        except TransportError as exc:
            print(f"nothing was sent: {exc}", file=err)
            return EXIT_FAILED
    batch_size = args.batch_size
    if batch_size > limits.max_batch_sellers:
        batch_size = limits.max_batch_sellers
        print(f"--batch-size lowered to {batch_size}, the most the exchange accepts per request", file=err)
    summary, sellers = _checked(result, limits)

    def progress(message: str) -> None:
        if not args.quiet:
            print(message, file=err, flush=True)

    submit_sellers(
        client,
        sellers,
        batch_size=batch_size,
        max_body_bytes=limits.max_body_bytes,
        parallel=args.parallel,
        progress=progress,
        summary=summary,
    )
    print(summary.format(), file=out)
    return _exit_code(summary)


def _dry_run(args: argparse.Namespace, region: str | None, out: TextIO, err: TextIO) -> int:
    """Everything ``submit`` does before sending, and nothing after: no request at all, not even for the
    platform's region or the live limits (the contract's defaults stand in)."""
    if region is None and not args.quiet:
        print(
            "dry run without --default-region: the exchange is not asked for the platform's, so national "
            "phone numbers and country-less ids are checked without one",
            file=err,
        )
    summary, sellers = _checked(_read(args, region), Limits())
    summary.dry_run = True
    defaults = Limits()
    batches = list(
        batched(sellers, min(args.batch_size, defaults.max_batch_sellers), defaults.max_body_bytes)
    )
    summary.batches_total = len(batches)
    if args.payloads_file:
        payloads = [{"sellers": [seller.to_payload() for seller in batch]} for batch in batches]
        try:
            args.payloads_file.write_text(
                json.dumps(payloads, indent=2, ensure_ascii=False), encoding="utf-8"
            )
        except OSError as exc:
            raise UsageError(f"cannot write {args.payloads_file}: {exc.strerror or exc}") from None
    print(summary.format(), file=out)
    return _exit_code(summary)


def _consortium_key(args: argparse.Namespace) -> bytes | None:
    """The consortium key from --consortium-key-file or the file named by the environment; None if neither."""
    path = args.consortium_key_file or os.environ.get(CONSORTIUM_KEY_ENV) or None
    if path is None:
        return None
    try:
        return read_consortium_key_file(path)
    except ValueError as exc:
        source = "--consortium-key-file" if args.consortium_key_file else CONSORTIUM_KEY_ENV
        raise UsageError(f"{source}: {exc}") from None


def _read(args: argparse.Namespace, region: str | None) -> CsvResult:
    consortium_key = _consortium_key(args)
    try:
        return read_submission_file(
            args.csv_file, region, send_valid_rows=args.send_valid_rows, consortium_key=consortium_key
        )
    except CsvFormatError as exc:
        raise UsageError(f"{args.csv_file}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {args.csv_file}: {exc.strerror or exc}") from None


def _checked(result: CsvResult, limits: Limits) -> tuple[SubmitSummary, list[SellerReport]]:
    """The summary of what was read, and the sellers to send: those within the exchange's limits."""
    summary = SubmitSummary.of(result)
    sellers, over_limit = within_limits(result.sellers, limits)
    summary.rejected = sorted([*summary.rejected, *over_limit], key=lambda row: row.line)
    summary.count_sellers(sellers)
    return summary, sellers


def _exit_code(summary: SubmitSummary) -> int:
    if not summary.ok:
        return EXIT_FAILED
    return EXIT_OK if summary.complete else EXIT_REJECTED


def _lookup(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    client: ExchangeClient | None = None
    limits: Limits | None = None
    if args.kind in KINDS:
        region = _region(args)
        if region is None:
            client = _client(args, err)
            limits, region = client.settings()
            _say_region(region, err)
        indicators = []
        for position, value in enumerate(args.values, start=1):
            try:
                indicators.append(Indicator(args.kind, transport_hash(args.kind, value, region)))
            except NormalizationError as exc:
                raise UsageError(f"value #{position} rejected: {exc}") from None
    else:
        indicators = _similarity_indicators(args)
    client = client or _client(args, err)
    most = (limits or client.limits()).max_lookup_indicators
    if len(indicators) > most:
        raise UsageError(f"{len(indicators)} values given; the exchange screens at most {most} per lookup")
    answer = client.lookup(indicators)
    _print_json(answer, out)
    return EXIT_OK


def _similarity_indicators(args: argparse.Namespace) -> list[Indicator]:
    """The indicators of photos, documents, names or addresses to look up, made here as ``submit`` makes those
    of CSV rows (no request is made); a value that cannot be had is a usage error naming its position, the
    reason and never a name or an address."""
    consortium_key = None
    if args.kind in KEYED_LOOKUP_KINDS:
        consortium_key = _consortium_key(args)
        if consortium_key is None:
            raise UsageError(f"lookup --kind {args.kind} needs the consortium key: {NO_KEY_HINT}")
    photos = PhotoHasher()  # relative paths from the current directory
    documents = DocumentHasher(consortium_key=consortium_key)
    encoder = FuzzyEncoder(consortium_key)
    indicators = []
    for position, value in enumerate(args.values, start=1):
        try:
            if args.kind == IMAGE_KIND:
                indicators.append(Indicator.of_photo(photos.variants(value)))
            elif args.kind == DOCUMENT_KIND:
                indicators.append(Indicator.of_document(documents.fingerprint(value)))
            else:
                # A lookup is no stored record, so it has no seller_ref to salt the noise with: a fresh random
                # salt per value keeps two lookups of one name from sharing a bit pattern (which the exchange
                # could count), as two sellers' records of one name do not share one.
                salt = secrets.token_bytes(LOOKUP_SALT_BYTES)
                indicators.append(
                    Indicator(args.kind, "", encoding=encoder.encode_salted(args.kind, value, salt))
                )
        except (ImageHashError, DocumentError, FuzzyEncodingError) as exc:
            raise UsageError(f"value #{position} rejected ({exc.reason}): {exc}") from None
    return indicators


def _retract(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.seller_ref.strip():
        raise UsageError("SELLER_REF must not be empty")
    if not args.reason.strip():
        raise UsageError("--reason must not be empty")
    answer = _client(args, err).retract(args.seller_ref.strip(), args.reason.strip())
    _print_json(answer, out)
    return EXIT_OK


def _appeal(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.seller_ref.strip():
        raise UsageError("SELLER_REF must not be empty")
    files = [(path, False) for path in args.document] + [(path, True) for path in args.falsified]
    if len(files) > MAX_APPEAL_DOCUMENTS:
        raise UsageError(f"{len(files)} documents given; the exchange takes at most {MAX_APPEAL_DOCUMENTS}")
    documents: list[tuple[str, bool | None]] = []
    for path, falsified in files:
        try:
            documents.append((file_sha256(path), falsified))
        except OSError as exc:
            raise UsageError(f"cannot read document {path}: {exc.strerror or exc}") from None
    answer = _client(args, err).appeal(args.seller_ref.strip(), args.outcome, documents, args.note)
    _print_json(answer, out)
    return EXIT_OK


# --- shared ----------------------------------------------------------------------------------------------


def _region(args: argparse.Namespace) -> str | None:
    try:
        return normalize_region(args.default_region)
    except NormalizationError:
        raise UsageError("--default-region must be an ISO 3166 two-letter country code, e.g. DE") from None


def _check_readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _say_region(region: str | None, err: TextIO) -> None:
    """Say which region hashes national numbers when --default-region was not given."""
    if region:
        print(
            f"default region {region}: the platform's, from the exchange (--default-region overrides)",
            file=err,
        )
    else:
        print(
            "no default region: the platform has none (give --default-region for national numbers)", file=err
        )


def _client(args: argparse.Namespace, err: TextIO) -> ExchangeClient:
    if not args.url or not args.key_file:
        raise UsageError("--url and --key-file are required (submit: unless --dry-run)")
    if args.max_retries < 0:
        raise UsageError("--max-retries must be zero or more")
    try:
        api_key = args.key_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise UsageError(f"cannot read the key file {args.key_file}: {detail}") from None
    if not api_key or any(ch.isspace() for ch in api_key):
        raise UsageError(f"the key file {args.key_file} must contain exactly one API key")
    parts = urllib.parse.urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("--url must be an http:// or https:// URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        print("warning: sending the API key over plain http; use https outside a test setup", file=err)
    return ExchangeClient(args.url, api_key, timeout=args.timeout, max_retries=args.max_retries)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _print_json(data: Any, out: TextIO) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=out)
