"""The store's in-memory index per kind and process (exchange.similarity._KindIndex): built ahead by
`warm_all_indexes` (gunicorn's post_worker_init) with progress after every chunk, brought up to date with the
rows added since, read again from scratch when rows it held were rolled back, and never trusted alone: a stored
item deleted since the index read it cannot match."""

from __future__ import annotations

from typing import Any

import pytest

from exchange import similarity
from exchange.models import SimilarItem
from tests.builders import submit
from tests.conftest import KeyedPlatform
from tests.exchange.test_images import image_indicator, photo, with_images

pytestmark = pytest.mark.django_db


def report(kp: KeyedPlatform, ref: str, *seeds: int) -> Any:
    body = with_images(ref, *(image_indicator(photo(seed)) for seed in seeds))
    response = submit(kp.client(), body)
    assert response.status_code == 201, response.content
    return response


def test_warming_builds_every_kind_with_items_and_reports_progress(acme: KeyedPlatform, monkeypatch):
    report(acme, "acme-1", 1, 2, 3)
    similarity.forget_indexes()
    monkeypatch.setattr(similarity, "_READ_CHUNK", 2)
    seen: list[int] = []
    sizes = similarity.warm_all_indexes(seen.append)
    assert set(sizes) == {"image"} and sizes["image"].items == 3
    hashes = sum(1 + len(extra["crops"]) for extra in SimilarItem.objects.values_list("extra", flat=True))
    assert sizes["image"].keys == 16 * hashes  # 16 chunk keys per hash, full hashes and crops
    assert sizes["image"].bytes > 0 and seen == [2]  # after the one full chunk of two
    # A lookup now uses the warm index: nothing is read again but the newest id.
    index = similarity._index("image")
    assert index.watermark == SimilarItem.objects.order_by("-pk").values_list("pk", flat=True).first()


def test_the_index_reads_what_other_processes_added_since(acme: KeyedPlatform, bazaar: KeyedPlatform):
    report(acme, "acme-1", 4)
    similarity.warm_all_indexes()
    item = SimilarItem.objects.get()
    # Another process stored a near copy meanwhile: here, a row the index has not read.
    SimilarItem.objects.create(kind="image", value=item.value[:-1] + "0", extra=item.extra, group=item.group)
    response = bazaar.client().post(
        "/api/v1/lookups/", {"indicators": [image_indicator(photo(4))]}, format="json"
    )
    assert response.json()["results"][0]["match"] is True
    assert similarity._index("image").size == 2


def test_rows_rolled_back_make_the_index_start_again(acme: KeyedPlatform):
    report(acme, "acme-1", 5, 6)
    index = similarity._index("image")
    similarity.warm_all_indexes()
    assert index.size == 2
    SimilarItem.objects.latest("pk").delete()  # the newest row gone
    index.refresh()
    assert index.size == 1  # its highest id fell below what was read: read again


def test_an_item_deleted_since_the_index_read_it_cannot_match(acme: KeyedPlatform, bazaar: KeyedPlatform):
    report(acme, "acme-1", 7)
    report(acme, "acme-2", 8)  # a newer row keeps the highest id where it was
    similarity.warm_all_indexes()
    SimilarItem.objects.filter(value=photo(7).full.hex).delete()
    response = bazaar.client().post(
        "/api/v1/lookups/", {"indicators": [image_indicator(photo(7))]}, format="json"
    )
    assert response.json()["results"][0]["match"] is False


def test_gunicorn_warms_each_worker_and_keeps_telling_the_arbiter_it_lives(acme: KeyedPlatform, monkeypatch):
    import gunicorn_config

    report(acme, "acme-1", 9, 10, 11)
    similarity.forget_indexes()
    monkeypatch.setattr(similarity, "_READ_CHUNK", 1)
    freezes: list[bool] = []  # not this test process's objects
    monkeypatch.setattr(gunicorn_config.gc, "freeze", lambda: freezes.append(True))

    class Worker:
        notified = 0

        def notify(self) -> None:
            self.notified += 1

    worker = Worker()
    gunicorn_config.post_worker_init(worker)
    assert worker.notified == 3 and similarity._index("image").size == 3
    similarity.forget_indexes()
    monkeypatch.setenv("EXCHANGE_WARM_SIMILARITY_INDEXES", "0")
    gunicorn_config.post_worker_init(worker)
    assert similarity._index("image").size == 0  # left to the first request
    assert freezes == [
        True,
        True,
    ]  # with a warm-up or without, the worker freezes what it holds before requests


def test_a_worker_whose_database_does_not_answer_still_starts(monkeypatch, caplog):
    import gunicorn_config

    def down(progress: Any = None) -> Any:
        raise ConnectionError("database down")

    monkeypatch.setattr(similarity, "warm_all_indexes", down)
    monkeypatch.setattr(gunicorn_config.gc, "freeze", lambda: None)
    gunicorn_config.post_worker_init(object())  # no exception: the first request builds the index
    assert "event=similarity_index_warm_failed error=ConnectionError" in caplog.text


def test_the_raw_reads_name_the_models_tables():
    """thresholds() and the index's refresh read with raw SQL (every lookup runs them): the tables they name
    are the models'."""
    import inspect

    from exchange.models import MatchThreshold, SimilarItem

    source = inspect.getsource(similarity)
    assert f"FROM {MatchThreshold._meta.db_table}" in source
    assert f"FROM {SimilarItem._meta.db_table} WHERE kind" in source


def test_recount_sets_each_groups_holders_to_its_sellers_and_a_group_without_sightings_to_zero(
    acme: KeyedPlatform, bazaar: KeyedPlatform
):
    """similarity.recount, one statement on PostgreSQL: the holders of the given groups only, from their
    sightings; a group whose sightings are all gone counts none."""
    from exchange.models import Indicator, Sighting

    report(acme, "acme-1", 1)
    report(bazaar, "baz-1", 1)
    report(acme, "acme-2", 2)
    shared, single = (SimilarItem.objects.get(value=photo(seed).full.hex).group for seed in (1, 2))
    assert (shared.holders, single.holders) == (2, 1)
    Indicator.objects.filter(pk__in=[shared.pk, single.pk]).update(holders=7)
    Sighting.objects.filter(indicator=single).delete()
    similarity.recount([shared.pk, single.pk, shared.pk])
    shared.refresh_from_db()
    single.refresh_from_db()
    assert (shared.holders, single.holders) == (2, 0)
    Indicator.objects.filter(pk=shared.pk).update(holders=7)
    similarity.recount([single.pk])  # only the groups given
    shared.refresh_from_db()
    assert shared.holders == 7
