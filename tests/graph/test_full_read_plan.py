"""The full recluster's read joins by index lookups whatever the statistics say (`graph.clustering.
_index_joins_only`): the planner's join settings are off for that statement only, and come back as they were,
after the read and after a failure inside it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from graph import clustering
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner settings"),
]


def joins() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')")
        row = cursor.fetchone()
    return row[0], row[1]


def plan(cursor: object) -> str:
    cursor.execute(  # type: ignore[attr-defined]
        "EXPLAIN SELECT count(*) FROM exchange_indicator i"
        " JOIN exchange_sighting s ON s.indicator_id = i.id"
        " JOIN exchange_seller sel ON sel.id = s.seller_id WHERE i.holders >= 2"
    )
    return "\n".join(row[0] for row in cursor.fetchall())  # type: ignore[attr-defined]


def test_the_read_joins_by_index_and_leaves_the_settings_as_they_were(
    acme: KeyedPlatform, bazaar: KeyedPlatform
) -> None:
    email = ("email", "shared@example.com")
    assert submit(acme.client(), seller("a1", email)).status_code == 201
    assert submit(bazaar.client(), seller("b1", email)).status_code == 201
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_mergejoin = off")  # a caller's own setting is kept too
        assert joins() == ("on", "off")
        with clustering._pg_cursor() as pg, clustering._index_joins_only(pg):
            assert joins() == ("off", "off")
            text = plan(pg)
            assert "Hash Join" not in text and "Merge Join" not in text, text
        assert joins() == ("on", "off")
        columns = clustering._read_full(timezone.now(), seller_facts=True)
        assert sorted(set(columns.seller.tolist())) == sorted(
            acme.platform.sellers.values_list("id", flat=True).union(
                bazaar.platform.sellers.values_list("id", flat=True)
            )
        )
        assert joins() == ("on", "off")


def test_a_failed_read_takes_its_settings_with_it() -> None:
    with transaction.atomic():
        with (
            pytest.raises(psycopg.errors.DivisionByZero),
            transaction.atomic(),
            clustering._pg_cursor() as cursor,
            clustering._index_joins_only(cursor),
        ):
            cursor.execute("SELECT 1 / 0")
        assert joins() == ("on", "on")
