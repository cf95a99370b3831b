"""The partner contract (exchange/contract.py): one pure module the client and the server both follow."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest

from exchange import contract, ingest, normalization, serializers
from exchange.client import submission as client_submission
from exchange.client.csvinput import read_submission_rows
from exchange.converters import SellerRefConverter

ROOT = Path(__file__).resolve().parents[2]
HEADER = "seller_ref,status,reasons,reported_at,kind,value\n"


def test_contract_is_pure_stdlib() -> None:
    tree = ast.parse((ROOT / "exchange" / "contract.py").read_text(encoding="utf-8"))
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections", "dataclasses", "datetime", "re", "typing"}


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("a", True),
        ("A-z.0_9:x", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("", False),
        (".", False),  # dot segments: HTTP clients resolve them away in /api/v1/sellers/{seller_ref}/
        ("..", False),
        ("...", True),
        (".a", True),
        ("..a", True),
        ("a..", True),
    ],
)
def test_seller_ref_rule(ref: str, ok: bool) -> None:
    assert contract.is_seller_ref(ref) is ok
    assert bool(ingest.SELLER_REF_RE.fullmatch(ref)) is ok
    assert bool(re.fullmatch(SellerRefConverter.regex, ref)) is ok


@pytest.mark.parametrize("ref", ["..", "."])
def test_a_dot_segment_is_not_a_seller_ref_in_the_url_either(ref: str) -> None:
    """Inside the URL pattern the lookahead stops at the next "/": /sellers/../retract/ does not resolve."""
    from django.urls import Resolver404, resolve

    with pytest.raises(Resolver404):
        resolve(f"/api/v1/sellers/{ref}/retract/")
    assert resolve("/api/v1/sellers/.../retract/").kwargs["seller_ref"] == "..."


def test_server_uses_the_contract_objects() -> None:
    assert ingest.SELLER_REF_RE is contract.SELLER_REF_RE
    assert normalization.is_transport_hash is contract.is_transport_hash
    assert client_submission.MAX_BATCH_SIZE == contract.DEFAULT_MAX_BATCH_SELLERS


def test_one_copy_of_the_transport_hash_pattern() -> None:
    copies = [
        path.relative_to(ROOT).as_posix()
        for folder in ("exchange", "graph", "accounts")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"0-9a-f(A-F)?\]\{64\}", path.read_text(encoding="utf-8"))
    ]
    assert copies == []  # contract.py builds it from TRANSPORT_HASH_LENGTH
    assert contract.is_transport_hash("a" * 64)
    assert not contract.is_transport_hash("A" * 64)
    assert not contract.is_transport_hash("a" * 63)


@pytest.mark.parametrize(
    ("ref", "reason"),
    [("x" * 129, "longer than 128 characters"), ("bad ref", "seller_ref must be 1-128 characters")],
)
def test_client_refuses_a_seller_ref_the_server_would_refuse(ref: str, reason: str) -> None:
    text = (
        HEADER
        + f"ok-1,confirmed,counterfeit,2024-01-01T00:00:00Z,email,a@x.com\n{ref},confirmed,counterfeit,2024-01-01T00:00:00Z,email,b@x.com\n"
    )
    result = read_submission_rows(io.StringIO(text))
    assert [s.seller_ref for s in result.sellers] == ["ok-1"]
    [rejected] = result.rejected
    assert rejected.line == 3
    assert reason in str(rejected)
    assert str(rejected).startswith("line 3")


def _limit(serializer: object, name: str) -> int:
    return serializer.fields[name].max_length  # type: ignore[attr-defined]


def test_serializers_read_the_live_limits(settings) -> None:
    settings.EXCHANGE_MAX_BATCH_SELLERS = 7
    settings.EXCHANGE_MAX_SELLER_INDICATORS = 5
    settings.EXCHANGE_MAX_LOOKUP_INDICATORS = 3
    assert _limit(serializers.SubmissionSerializer(), "sellers") == 7
    assert _limit(serializers.SellerReportSerializer(), "indicators") == 5
    assert _limit(serializers.LookupSerializer(), "indicators") == 3


def test_settings_default_to_the_contract_limits() -> None:
    from django.conf import settings

    # The test settings may override them; the defaults in exchange/settings.py are the contract's.
    source = re.sub(r"\s+", "", (ROOT / "exchange" / "settings.py").read_text(encoding="utf-8"))
    for name in ("MAX_BATCH_SELLERS", "MAX_SELLER_INDICATORS", "MAX_LOOKUP_INDICATORS"):
        assert f'envint("EXCHANGE_{name}",contract.DEFAULT_{name})' in source
    assert (
        'DATA_UPLOAD_MAX_MEMORY_SIZE=envint("EXCHANGE_MAX_BODY_BYTES",contract.DEFAULT_MAX_BODY_BYTES)'
        in source
    )
    assert isinstance(settings.EXCHANGE_MAX_BATCH_SELLERS, int)


@pytest.mark.django_db
def test_me_reports_the_live_limits_the_client_reads(acme, settings) -> None:
    settings.EXCHANGE_MAX_BATCH_SELLERS = 250
    settings.EXCHANGE_MAX_LOOKUP_INDICATORS = 3
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 65_536  # EXCHANGE_MAX_BODY_BYTES
    answer = acme.client().get("/api/v1/me/").json()
    assert answer["limits"] == {
        "max_batch_sellers": 250,
        "max_seller_indicators": 100,
        "max_lookup_indicators": 3,
        "max_body_bytes": 65_536,
    }
    assert contract.Limits.from_answer(answer) == contract.Limits(250, 100, 3, 65_536)
    assert contract.Limits.from_answer({}) == contract.Limits()


@pytest.mark.django_db
def test_me_reports_the_platforms_default_region_the_client_reads(acme, tmp_path) -> None:
    # issue 19, item 5: `create_platform --default-region` is what the client hashes national numbers with.
    from exchange.client.api import region_of
    from tests.exchange.test_schema import live_schema

    answer = acme.client().get("/api/v1/me/").json()
    assert answer["default_region"] == "DE" and region_of(answer) == "DE"
    acme.platform.default_region = ""
    acme.platform.save()
    assert acme.client().get("/api/v1/me/").json()["default_region"] is None
    field = live_schema(tmp_path)["components"]["schemas"]["Me"]["properties"]["default_region"]
    assert field["nullable"] is True and "--default-region" in field["description"]
