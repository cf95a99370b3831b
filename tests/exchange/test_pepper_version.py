"""One rule for the current pepper version: every caller agrees, with and without the KeyState row."""

from __future__ import annotations

import importlib
import re
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command

from exchange import hash_search, ingest
from exchange.hashing import default_key_version, keyed_token, keyed_tokens
from exchange.models import Indicator, KeyState
from exchange.normalization import KINDS
from tests.builders import seller, submit, th

V2 = b"second-pepper-version-32-bytes-long!!"
HASH = "a" * 64


def test_default_is_the_highest_configured_version() -> None:
    assert default_key_version({1: b"x", 3: b"y", 2: b"z"}) == 3
    with pytest.raises(KeyError, match="EXCHANGE_PEPPERS"):
        default_key_version({})


def hash_search_version(peppers: dict[int, bytes]) -> int:
    tokens = hash_search.tokens_for(HASH)
    [version] = [v for v in peppers if tokens == keyed_tokens([(k, HASH) for k in KINDS], peppers, v)]
    return version


@pytest.mark.django_db
@pytest.mark.parametrize("row", [None, 1, 2])
def test_every_caller_agrees(settings, row: int | None) -> None:
    settings.EXCHANGE_PEPPERS = {**settings.EXCHANGE_PEPPERS, 2: V2}
    KeyState.objects.all().delete()
    if row is not None:
        KeyState.objects.create(current_version=row)
    expected = row if row is not None else 2
    assert KeyState.objects.current_version(lock=True) == expected
    assert KeyState.objects.current_version(lock=False) == expected
    assert ingest.current_key_version() == expected
    assert ingest.current_key_version(lock=False) == expected
    assert hash_search_version(settings.EXCHANGE_PEPPERS) == expected
    out = StringIO()
    call_command("rotate_pepper", "--dry-run", stdout=out, stderr=StringIO())
    if expected == 2:
        assert "nothing to do" in out.getvalue()
    else:
        assert "from version 1 to 2" in out.getvalue()


@pytest.mark.django_db
def test_rotation_without_a_row_creates_it_with_the_default(settings) -> None:
    settings.EXCHANGE_PEPPERS = {**settings.EXCHANGE_PEPPERS, 2: V2}
    KeyState.objects.all().delete()
    out = StringIO()
    call_command("rotate_pepper", stdout=out, stderr=StringIO())
    assert "nothing to do" in out.getvalue()
    assert KeyState.objects.get().current_version == 2 == KeyState.objects.current_version()


@pytest.mark.django_db
def test_migration_creates_the_row_the_fallback_would_assume(settings) -> None:
    settings.EXCHANGE_PEPPERS = {**settings.EXCHANGE_PEPPERS, 2: V2}
    KeyState.objects.all().delete()
    fallback = KeyState.objects.current_version()
    migration = importlib.import_module("exchange.migrations.0002_keystate_row")
    migration.create_state(django_apps, None)
    assert KeyState.objects.get().current_version == fallback == 2


@pytest.mark.django_db
def test_ingest_stores_tokens_under_the_fallback_version(settings, acme) -> None:
    settings.EXCHANGE_PEPPERS = {**settings.EXCHANGE_PEPPERS, 2: V2}
    KeyState.objects.all().delete()
    submit(acme.client(), seller("acme-1", ("email", "ring@x.com")))
    indicator = Indicator.objects.get()
    assert indicator.key_version == 2
    assert indicator.token == keyed_token("email", th("email", "ring@x.com"), settings.EXCHANGE_PEPPERS, 2)


# In addition to the behaviour above: no code path picks a token version from EXCHANGE_PEPPERS on its own.
# The only min()/max() over the peppers allowed outside `default_key_version` are a rotation's target (the
# newest version, by definition) and the submission body digests (keyed with the newest pepper, each row
# naming its version): neither is the version stored tokens use.
ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    ("exchange/management/commands/rotate_pepper.py", "target = max(peppers)"),
    ("exchange/ingest.py", "digest_version = max(settings.EXCHANGE_PEPPERS)"),
    ("exchange/migrations/0005_submission_ref_keyed_digest.py", "version = max(settings.EXCHANGE_PEPPERS)"),
}
PICK = re.compile(r"\b(min|max|sorted)\((settings\.)?(EXCHANGE_PEPPERS|peppers)\b")


def test_no_code_path_picks_a_version_from_the_peppers_itself() -> None:
    found = set()
    sources = [
        p
        for d in ROOT.iterdir()
        if (d / "__init__.py").exists() and d.name != "tests"
        for p in d.rglob("*.py")
    ]
    for path in sources:
        relative = path.relative_to(ROOT).as_posix()
        if relative == "exchange/hashing.py":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if PICK.search(line):
                found.add((relative, line.strip()))
    assert found <= ALLOWED, sorted(found - ALLOWED)
    assert (
        "exchange/ingest.py",
        "digest_version = max(settings.EXCHANGE_PEPPERS)",
    ) in found  # the scan works
