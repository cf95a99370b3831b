"""Names and addresses typed differently through the API (issue 14; kinds person_name, business_name,
shipping_address_fuzzy, return_address_fuzzy: exchange.matching.FuzzyMatcher, exchange.similarity): the keyed
encodings made on the partner's side group by Dice similarity; a fuzzy name and a fuzzy address together link
two platforms' sellers (two weak kinds), a name alone does not; lookups answer for fuzzy kinds; the evidence
chain states the similarity; bad input is refused whole, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from exchange import fuzzy, similarity
from exchange.contract import FUZZY_ENCODING_KIND
from exchange.models import Indicator, Seller, Sighting, SimilarItem, SimilarMatch
from graph.models import ClusterMember
from tests.builders import seller, submit
from tests.conftest import KeyedPlatform

pytestmark = pytest.mark.django_db

KEY = bytes(range(32))  # the consortium key the partners share (the exchange never has it)


def encoded(kind: str, value: str, salt: str) -> dict[str, Any]:
    encoding = fuzzy.encode(FUZZY_ENCODING_KIND[kind], value, KEY, salt.encode())
    return {"kind": kind, "encoding": fuzzy.to_hex(encoding)}


def with_fuzzy(ref: str, *rows: tuple[str, str]) -> dict[str, Any]:
    body = seller(ref)
    body["indicators"] = [encoded(kind, value, ref) for kind, value in rows]
    return body


def cluster_of(ref: str) -> int | None:
    member = ClusterMember.objects.filter(seller__seller_ref=ref).first()
    return member.cluster_id if member else None


def test_a_name_and_an_address_typed_differently_link_two_platforms(
    acme: KeyedPlatform, bazaar: KeyedPlatform
):
    one = with_fuzzy(
        "acme-1",
        ("person_name", "Jonathan Smithson"),
        ("shipping_address_fuzzy", "12 Baker Street, Apt 4, London"),
    )
    other = with_fuzzy(
        "bz-1",
        ("person_name", "Smithson Jonathan"),
        ("shipping_address_fuzzy", "Apartment 4, 12 Baker St., London"),
    )
    assert submit(acme.client(), one).status_code == 201
    response = submit(bazaar.client(), other)
    assert response.status_code == 201, response.content
    # Two items of each kind, each pair in one near-duplicate group: two group indicators.
    assert SimilarItem.objects.count() == 4
    assert Indicator.objects.filter(kind__in=["person_name", "shipping_address_fuzzy"]).count() == 2
    assert cluster_of("acme-1") is not None and cluster_of("acme-1") == cluster_of("bz-1")


def test_a_similar_name_alone_is_weak_and_does_not_link(acme: KeyedPlatform, bazaar: KeyedPlatform):
    submit(acme.client(), with_fuzzy("acme-1", ("person_name", "Jonathan Smithson")))
    submit(bazaar.client(), with_fuzzy("bz-1", ("person_name", "Jonathon Smithson")))
    assert SimilarItem.objects.values("group").distinct().count() == 1  # grouped, but weak alone
    assert cluster_of("acme-1") is None and cluster_of("bz-1") is None


def test_different_names_and_addresses_do_not_group(acme: KeyedPlatform, bazaar: KeyedPlatform):
    submit(
        acme.client(),
        with_fuzzy(
            "acme-1",
            ("business_name", "Golden Lotus Trading"),
            ("return_address_fuzzy", "7 Mill Lane, Leeds"),
        ),
    )
    submit(
        bazaar.client(),
        with_fuzzy(
            "bz-1", ("business_name", "Northwind Supplies"), ("return_address_fuzzy", "88 Harbour Road, Cork")
        ),
    )
    assert SimilarItem.objects.values("group").distinct().count() == 4
    assert cluster_of("acme-1") is None


def test_a_lookup_answers_for_a_fuzzy_name(acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform):
    submit(acme.client(), with_fuzzy("acme-1", ("business_name", "Golden Lotus Trading Ltd")))
    submit(bazaar.client(), with_fuzzy("bz-1", ("business_name", "Goldn Lotus Trading Limited")))
    response = third.client().post(
        "/api/v1/lookups/",
        {
            "indicators": [
                encoded("business_name", "Golden Lotus Tradng", "probe-1"),
                encoded("business_name", "Northwind Supplies", "probe-2"),
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    near, other = response.json()["results"]
    assert near["kind"] == "business_name" and near["match"] is True and near["other_platforms"] == 2
    assert other["match"] is False
    assert near["reported_falsified"] is None  # only documents say it


def test_the_encodings_are_stored_as_sent_and_nothing_else(acme: KeyedPlatform):
    sent = encoded("person_name", "Jonathan Smithson", "acme-1")
    body = seller("acme-1")
    body["indicators"] = [sent]
    submit(acme.client(), body)
    [item] = SimilarItem.objects.all()
    assert item.value == sent["encoding"] and item.extra == {}
    # The group indicator's token is random, nothing of the encoding.
    assert sent["encoding"][:16] not in Indicator.objects.get(kind="person_name").token


def _with_bits(ones: int) -> str:
    return ((1 << ones) - 1).to_bytes(fuzzy.FILTER_BYTES, "big").hex()


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"encoding": "ab" * 100}, "encoding", "got 200 characters"),
        ({"encoding": "Z" * 256}, "encoding", "lowercase hex"),
        ({"encoding": None}, "encoding", "is required"),
        ({"encoding": _with_bits(0)}, "encoding", "has 0 of 1024 bits set"),
        ({"encoding": _with_bits(1024)}, "encoding", "has 1024 of 1024 bits set"),
        ({"encoding": 12}, "encoding", "lowercase hex"),
        ({"hash": "ab" * 32}, "hash", "unknown field"),
        ({"name": "Jonathan Smithson"}, "name", "unknown field"),
    ],
)
def test_a_bad_fuzzy_indicator_is_refused_naming_the_field_and_nothing_is_stored(
    acme: KeyedPlatform, change: dict[str, Any], field: str, says: str
):
    indicator = {**encoded("person_name", "Jonathan Smithson", "acme-bad"), **change}
    indicator = {k: v for k, v in indicator.items() if v is not None}
    body = seller("acme-bad")
    body["indicators"] = [indicator]
    response = submit(acme.client(), with_fuzzy("acme-ok", ("person_name", "Ada Lovelace")), body)
    assert response.status_code == 400
    errors = response.json()["error"]["details"]
    assert any(says in message for message in errors[f"sellers[1].indicators[0].{field}"]), errors
    assert not Seller.objects.exists() and not SimilarItem.objects.exists() and not Indicator.objects.exists()


def test_the_evidence_chain_names_the_similarity(acme: KeyedPlatform, bazaar: KeyedPlatform):
    from accounts.scoping import EVERYTHING
    from graph.explain import explain
    from graph.models import ActorCluster

    submit(
        acme.client(),
        with_fuzzy(
            "acme-1", ("person_name", "Jonathan Smithson"), ("return_address_fuzzy", "7 Mill Lane, Leeds")
        ),
    )
    submit(
        bazaar.client(),
        with_fuzzy(
            "bz-1", ("person_name", "Jonathon Smithson"), ("return_address_fuzzy", "7 Mill Lne, Leeds")
        ),
    )
    cluster = ActorCluster.objects.live().get()
    a, b = (Seller.objects.get(seller_ref=ref).pk for ref in ("acme-1", "bz-1"))
    [step] = explain(cluster, EVERYTHING).chain(a, b)
    notes = {row.kind: (row.strength, note) for row, note in step.noted}
    assert set(notes) == {"person_name", "return_address_fuzzy"}
    strength, note = notes["person_name"]
    assert strength == "weak" and note.startswith("similar names, Dice similarity 0.")
    assert note.endswith("(a match is 0.70 or more)")
    assert notes["return_address_fuzzy"][1].startswith("similar return addresses, Dice similarity 0.")


def test_a_person_name_and_a_business_name_are_one_piece_of_evidence(
    acme: KeyedPlatform, bazaar: KeyedPlatform
):
    """A business is often named after its owner: two sellers named Dubois, each trading as "Dubois", share a
    person's name and a business name, one family (exchange.contract.FUZZY_FAMILY): no link without more."""
    submit(
        acme.client(),
        with_fuzzy("acme-1", ("person_name", "Marc Dubois"), ("business_name", "Dubois Trading")),
    )
    submit(
        bazaar.client(),
        with_fuzzy("bz-1", ("person_name", "Marc Dubois"), ("business_name", "Dubois Trading")),
    )
    assert Indicator.objects.filter(kind__in=["person_name", "business_name"], holders=2).count() == 2
    assert cluster_of("acme-1") is None


def test_names_group_around_a_centre_two_steps_deep_and_do_not_chain(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    """Groups of names form around their first item (exchange.matching.FuzzyMatcher.transitive): a name that
    matches no centre joins the group of a member that matched the centre directly (CENTRE_DEPTH: a variant
    that drifted from the original but not from another variant of it), and a name matching only a member two
    steps out starts its own group, so similar names do not chain into one. Submitted one at a time, as the
    store meets them, and regrouped all at once by ``group_labels`` (the bench's and the threshold dry run's
    rule): the same groups."""
    from exchange.matching import MATCHERS, Item, group_labels

    names = ("Jonathen Smythsen", "Jonathan Smithsen", "Johnathan Smithson", "Johnathen Schmitson")
    values = [encoded("person_name", name, f"r{n}") for n, name in enumerate(names)]
    dice = lambda x, y: fuzzy.dice(bytes.fromhex(x["encoding"]), bytes.fromhex(y["encoding"]))  # noqa: E731
    a, b, c, d = values
    assert all(dice(x, y) >= 0.7 for x, y in ((a, b), (b, c), (c, d)))  # a chain ...
    assert all(dice(x, y) < 0.7 for x, y in ((a, c), (a, d), (b, d)))  # ... with no shortcut
    for kp, ref, indicator in ((acme, "a-1", a), (bazaar, "b-1", b), (third, "t-1", c), (acme, "a-2", d)):
        body = seller(ref)
        body["indicators"] = [indicator]
        assert submit(kp.client(), body).status_code == 201
    groups = dict(SimilarItem.objects.values_list("value", "group_id"))
    assert groups[a["encoding"]] == groups[b["encoding"]] == groups[c["encoding"]] != groups[d["encoding"]]
    items = [Item("person_name", x["encoding"]) for x in values]
    assert group_labels(MATCHERS["person_name"], items, 0.7) == [0, 0, 0, 3]
    # What an analyst reads of the link between the first and the third: their own similarity is below the
    # threshold, and the note says that the group, not the pair, joins them.
    group = Indicator.objects.get(pk=groups[a["encoding"]])
    first, third_seller = (Seller.objects.get(seller_ref=ref).pk for ref in ("a-1", "t-1"))
    assert similarity.note(first, third_seller, group) == (
        f"similar names, Dice similarity {dice(a, c):.2f} of the keyed encodings (a match is 0.70 or more); "
        "not a match by themselves: the group's other members join them"
    )
    assert "not a match" not in similarity.note(first, Seller.objects.get(seller_ref="b-1").pk, group)


def test_a_batch_groups_its_names_as_group_labels_does_in_the_order_it_stores_them(
    acme: KeyedPlatform, monkeypatch: pytest.MonkeyPatch
):
    """One submission with a chain of names and a near-copy of each: the store's groups (the batch's own pairs,
    two steps from a centre) are the groups ``group_labels`` forms from the items in the order they were
    stored, which is how the threshold dry run and ``graph.tuning.apply`` regroup them. Here the second step
    decides: one step from the centres would make two groups."""
    from exchange import matching
    from exchange.matching import MATCHERS, Item, group_labels

    names = ("Jonathen Smythsen", "Jonathan Smithsen", "Johnathan Smithson", "Johnathen Schmitson")
    bodies = []
    for n, name in enumerate(names + tuple(f"{name}e" for name in names)):
        body = seller(f"a-{n}")
        body["indicators"] = [encoded("person_name", name, f"4-{n}")]
        bodies.append(body)
    assert submit(acme.client(), *bodies).status_code == 201
    stored = list(SimilarItem.objects.order_by("pk").values_list("value", "group_id"))
    items = [Item("person_name", value) for value, _ in stored]
    assert len({group_id for _, group_id in stored}) == 1
    assert group_labels(MATCHERS["person_name"], items, 0.7) == [0] * 8
    monkeypatch.setattr(matching, "CENTRE_DEPTH", 1)
    assert len(set(group_labels(MATCHERS["person_name"], items, 0.7))) == 2


def test_a_name_joins_the_centre_it_matches_best_as_the_bench_models_it(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    """A name matching two centres joins the nearer one, not the older one (exchange.matching.centre_labels), in
    the store as in ``group_labels``, which tests/bench/bench_fuzzy_linking.py links with."""
    from exchange.matching import MATCHERS, Item, group_labels

    names = ("Jonathan Smithson", "Jonathon Smythsen", "Jonathen Smythsen")
    older, nearer, new = (encoded("person_name", name, f"r{n}") for n, name in enumerate(names))
    dice = lambda x, y: fuzzy.dice(bytes.fromhex(x["encoding"]), bytes.fromhex(y["encoding"]))  # noqa: E731
    assert dice(older, nearer) < 0.7 <= dice(new, older) < dice(new, nearer)
    for kp, ref, indicator in ((acme, "a-1", older), (bazaar, "b-1", nearer), (third, "t-1", new)):
        body = seller(ref)
        body["indicators"] = [indicator]
        assert submit(kp.client(), body).status_code == 201
    groups = dict(SimilarItem.objects.values_list("value", "group_id"))
    assert groups[older["encoding"]] != groups[nearer["encoding"]] == groups[new["encoding"]]
    items = [Item("person_name", x["encoding"]) for x in (older, nearer, new)]
    assert group_labels(MATCHERS["person_name"], items, 0.7) == [0, 1, 1]


def test_an_address_sent_exact_and_fuzzy_is_one_piece_of_evidence(acme: KeyedPlatform, bazaar: KeyedPlatform):
    """The family rule (exchange.contract.FUZZY_FAMILY): two sellers sharing one address, as its exact hash and
    as its fuzzy group, share one weak piece of evidence, which alone does not link; a second address typed
    differently makes two."""
    from tests.builders import th

    def report(ref: str, *addresses: str) -> dict[str, Any]:
        body = seller(ref)
        for address in addresses:
            body["indicators"] += [
                {"kind": "shipping_address", "hash": th("shipping_address", address)},
                encoded("shipping_address_fuzzy", address, ref),
            ]
        return body

    submit(acme.client(), report("acme-1", "12 Baker Street, London NW1 6XE"))
    submit(bazaar.client(), report("bz-1", "12 Baker Street, London NW1 6XE"))
    assert Indicator.objects.filter(kind="shipping_address", holders=2).count() == 1
    assert Indicator.objects.filter(kind="shipping_address_fuzzy", holders=2).count() == 1
    assert cluster_of("acme-1") is None and cluster_of("bz-1") is None
    # A second address, typed differently: its fuzzy group is one more indicator of the address family, which
    # counts once however many indicators it has (graph.linking.rules.ONE_PIECE_KINDS); a name beside it links.
    submit(acme.client(), report("acme-1", "7 Mill Lane, Leeds LS1 4AB"))
    submit(bazaar.client(), report("bz-1", "7 Mill Lne, Leeds LS1 4AB"))
    assert Indicator.objects.filter(kind="shipping_address_fuzzy", holders=2).count() == 2
    assert cluster_of("acme-1") is None and cluster_of("bz-1") is None
    submit(acme.client(), with_fuzzy("acme-1", ("person_name", "Jonathan Smithson")))
    submit(bazaar.client(), with_fuzzy("bz-1", ("person_name", "Jonathon Smithson")))
    assert cluster_of("acme-1") is not None and cluster_of("acme-1") == cluster_of("bz-1")


# Three names, each encoded with its seller_ref as the salt: X and Z are apart (Dice 0.69, below 0.70), Y matches
# both and Z better (0.88), so Y joins Z's group; Y and X still match each other at 0.76, above the direct
# threshold (0.73: exchange.matching.DIRECT_MATCH_MARGIN above 0.70).
X, Z, Y = ("s2", "Jonathan Smythson"), ("s1", "Jonathon Smithsen"), ("s4", "Jonathon Smithson")


def _name_dice(a: tuple[str, str], b: tuple[str, str]) -> float:
    return fuzzy.dice(
        fuzzy.encode("person_name", a[1], KEY, a[0].encode()),
        fuzzy.encode("person_name", b[1], KEY, b[0].encode()),
    )


def _store_and_model_agree() -> None:
    """The store's groups and direct matches are those ``fuzzy_evidence`` forms from the stored items in order."""
    from exchange.matching import MATCHERS, Item, fuzzy_evidence

    stored = list(
        SimilarItem.objects.filter(kind="person_name").order_by("pk").values_list("pk", "value", "group_id")
    )
    labels, direct = fuzzy_evidence(
        MATCHERS["person_name"], [Item("person_name", v) for _, v, _ in stored], 0.7
    )
    ids = [pk for pk, _, _ in stored]
    by_group: dict[int, set[int]] = {}
    for n, (_, _, group_id) in enumerate(stored):
        by_group.setdefault(group_id, set()).add(n)
    assert sorted(map(sorted, by_group.values())) == sorted(
        sorted(n for n, label in enumerate(labels) if label == centre) for centre in set(labels)
    )
    assert sorted(SimilarMatch.objects.values_list("older_id", "newer_id")) == sorted(
        (ids[b], ids[a]) for a, b, _ in direct
    )


def test_a_direct_match_across_groups_links_a_name_with_an_address(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform, admin_client: Any
):
    """Two names in different groups that match each other directly, 0.03 above the threshold, are evidence of
    their own between their sellers (a direct match, exchange.matching.direct_matches): with a shared address
    they link, though no group holds both names; in the store as in the model."""
    assert _name_dice(X, Z) < 0.7 and 0.73 <= _name_dice(Y, X) < _name_dice(Y, Z)
    x = with_fuzzy(X[0], ("person_name", X[1]), ("shipping_address_fuzzy", "12 Baker Street, Apt 4, London"))
    z = with_fuzzy(Z[0], ("person_name", Z[1]))
    y = with_fuzzy(
        Y[0], ("person_name", Y[1]), ("shipping_address_fuzzy", "Apartment 4, 12 Baker St., London")
    )
    for kp, body in ((acme, x), (third, z), (bazaar, y)):
        assert submit(kp.client(), body).status_code == 201
    groups = dict(SimilarItem.objects.filter(kind="person_name").values_list("value", "group_id"))
    [xv, zv, yv] = (body["indicators"][0]["encoding"] for body in (x, z, y))
    assert groups[xv] != groups[zv] == groups[yv]
    [match] = SimilarMatch.objects.select_related("indicator")
    assert {match.older.value, match.newer.value} == {xv, yv} and match.indicator.kind == "person_name"
    assert match.indicator.holders == 2
    _store_and_model_agree()
    assert cluster_of(X[0]) is not None and cluster_of(X[0]) == cluster_of(Y[0])
    assert cluster_of(Z[0]) is None
    # The evidence chain says it is a direct match, with its similarity and the direct threshold.
    a, b = (Seller.objects.get(seller_ref=ref).pk for ref in (X[0], Y[0]))
    assert similarity.note(a, b, match.indicator) == (
        f"similar names, Dice similarity {_name_dice(X, Y):.2f} of the keyed encodings (a match is 0.73 or more); "
        "a direct match between items of two groups"
    )
    assert similarity.describe_group(match.indicator) == similarity.GroupFacts(
        2, 2, match.score, direct_match=True
    )
    page = admin_client.get(f"/admin/exchange/indicator/{match.indicator_id}/change/").content.decode()
    assert (
        "a direct match between two person_name items of different groups, reported by 2 seller(s): similar "
        f"names, Dice similarity {_name_dice(X, Y):.2f} of the keyed encodings (a match is 0.73 or more)."
    ) in page
    assert xv not in page and yv not in page


def test_a_batch_forms_the_direct_matches_the_model_forms(acme: KeyedPlatform, bazaar: KeyedPlatform):
    """Names stored partly before and partly in one batch (whose new items are grouped in the order the store
    inserts them): the groups and direct matches are those ``fuzzy_evidence`` forms from the stored items."""
    names = [
        "Jonathan Smithson", "Jonathon Smithsen", "Jonathan Smythson", "Johnathan Smithson", "Jonathon Smithson",
        "Jonathan Smithsen", "Jonathen Smithson", "Jonathon Smythson", "Jonathan Smitson", "Nathan Smithson",
    ]  # fmt: skip
    bodies = [with_fuzzy(f"n-{n}", ("person_name", name)) for n, name in enumerate(names)]
    assert submit(acme.client(), *bodies[:3]).status_code == 201
    assert submit(bazaar.client(), *bodies[3:]).status_code == 201
    assert SimilarMatch.objects.count() >= 2
    _store_and_model_agree()


@pytest.mark.parametrize("cap", [1, 2])
def test_each_new_name_keeps_its_nearest_few_direct_matches_in_the_store_as_in_the_model(
    acme: KeyedPlatform, bazaar: KeyedPlatform, monkeypatch: pytest.MonkeyPatch, cap: int
):
    """An item makes at most `DIRECT_MATCHES_PER_ITEM` direct matches with the items before it, the nearest
    (`exchange.matching.kept_direct_matches`): without the bound the variants of a common name all matched one
    another across groups, a number growing with the square of the population. The store (a batch after stored
    names) keeps the same ones as the model."""
    from exchange import matching
    from exchange.matching import MATCHERS, Item, fuzzy_evidence

    names = [
        "Jonathan Smythson", "Jonathon Smithsen", "Nathan Smithson", "Jonathan Smitson", "Johnathan Smithson",
        "Jonathon Smithson", "Jonathan Smithsen", "Jonathen Smithson", "Jonathon Smythson", "Jonathan Smithson",
        "Jonathan Smythsen", "Johnathon Smithsen",
    ]  # fmt: skip
    bodies = [with_fuzzy(f"n-{n}", ("person_name", name)) for n, name in enumerate(names)]
    monkeypatch.setattr(matching, "DIRECT_MATCHES_PER_ITEM", cap)
    assert submit(acme.client(), *bodies[:5]).status_code == 201
    assert submit(bazaar.client(), *bodies[5:]).status_code == 201
    _store_and_model_agree()  # the model at the same bound

    items = [
        Item("person_name", value)
        for value in SimilarItem.objects.filter(kind="person_name")
        .order_by("pk")
        .values_list("value", flat=True)
    ]
    _, bounded = fuzzy_evidence(MATCHERS["person_name"], items, 0.7)
    monkeypatch.setattr(matching, "DIRECT_MATCHES_PER_ITEM", 1000)
    _, unbounded = fuzzy_evidence(MATCHERS["person_name"], items, 0.7)
    assert max(sum(1 for a, _, _ in unbounded if a == n) for n in range(len(items))) > cap
    for n in range(len(items)):
        nearest = sorted((-score, b) for a, b, score in unbounded if a == n)[:cap]
        assert sorted(b for a, b, _ in bounded if a == n) == sorted(b for _, b in nearest)
    assert SimilarMatch.objects.count() == len(bounded) < len(unbounded)


def test_a_seller_reported_later_with_a_matched_name_sees_the_direct_match(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    """A direct match is held by every seller of its two items: one reported later with the same encoding
    gets a sighting of it too."""
    x = with_fuzzy(X[0], ("person_name", X[1]))
    submit(acme.client(), x)
    submit(third.client(), with_fuzzy(Z[0], ("person_name", Z[1])))
    submit(bazaar.client(), with_fuzzy(Y[0], ("person_name", Y[1])))
    again = seller("acme-again")
    again["indicators"] = x["indicators"]
    submit(acme.client(), again)
    match = SimilarMatch.objects.get().indicator
    holders = set(Sighting.objects.filter(indicator=match).values_list("seller__seller_ref", flat=True))
    assert holders == {X[0], Y[0], "acme-again"}
    assert Indicator.objects.get(pk=match.pk).holders == 3


def test_two_indicators_of_one_name_do_not_link_two_sellers(
    acme: KeyedPlatform, bazaar: KeyedPlatform, third: KeyedPlatform
):
    """Two sellers each reported with two names that share a group and a direct match share two indicators of
    one kind: one piece of evidence (graph.linking.rules.ONE_PIECE_KINDS), no link without an address."""
    submit(third.client(), with_fuzzy(Z[0], ("person_name", Z[1])))
    first = with_fuzzy("p-1", ("person_name", X[1]))
    first["indicators"] = [encoded("person_name", X[1], X[0]), encoded("person_name", Z[1], "z-copy-1")]
    second = seller("p-2")
    second["indicators"] = [encoded("person_name", Y[1], Y[0]), encoded("person_name", Z[1], "z-copy-2")]
    submit(acme.client(), first)
    submit(bazaar.client(), second)
    shared = set(Sighting.objects.filter(seller__seller_ref="p-1").values_list("indicator", flat=True)) & set(
        Sighting.objects.filter(seller__seller_ref="p-2").values_list("indicator", flat=True)
    )
    assert len(shared) >= 2
    assert cluster_of("p-1") is None and cluster_of("p-2") is None
