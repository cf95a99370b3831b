"""The synthetic partner-data generator: determinism, CSV shape, valid values, planted truth, helpers.

Values are checked on canonical forms computed here by a deliberately small re-statement of the hashing
spec's rules, independent of the partner client, so the generator's promises are tested on their own.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
import pytest
from stdnum import iban as stdnum_iban
from stdnum.eu import vat as eu_vat
from stdnum.gb import vat as gb_vat

from fixtures.synthetic import (
    CSV_HEADER,
    DEFAULT_NOW,
    DEFAULT_THRESHOLDS,
    KINDS,
    REASONS,
    STATUSES,
    STRONG_KINDS,
    Dataset,
    Row,
    demo,
    expected_clusters,
    find_glued_clusters,
    generate,
    iban_check_digits,
    main,
    no_hub_glue,
    pairwise_precision_recall,
)

Key = tuple[str, str]

# --------------------------------------------------------------------------------------------------------------
# A small independent canonicalisation, per the published rules


_ABBREVIATIONS = {"st": "street", "rd": "road", "ave": "avenue"}


def canonical(kind: str, value: str, region: str) -> str:
    value = value.strip()
    if kind == "email":
        local, domain = value.lower().rsplit("@", 1)
        local = local.split("+", 1)[0]
        if domain == "googlemail.com":
            domain = "gmail.com"
        if domain == "gmail.com":
            local = local.replace(".", "")
        return f"{local}@{domain}"
    if kind == "phone":
        return phonenumbers.format_number(
            phonenumbers.parse(value, region), phonenumbers.PhoneNumberFormat.E164
        )
    if kind in ("tax_id", "business_registration", "bank_account"):
        return re.sub(r"[\s.\-]", "", value).upper()
    if kind == "crypto_wallet":
        return value.lower() if value.lower().startswith("0x") else value
    if kind == "store_name":
        return "".join(char for char in unicodedata.normalize("NFKC", value).casefold() if char.isalnum())
    if kind == "website_domain":
        host = re.sub(r"^[a-z]+://", "", value.lower())
        host = re.split(r"[/?#]", host, maxsplit=1)[0]
        return re.sub(r"^(www|m)\.", "", host)
    if kind in ("shipping_address", "return_address"):
        words = re.sub(r"[^\w\s]", " ", value.casefold()).split()
        return " ".join(_ABBREVIATIONS.get(word, word) for word in words)
    if kind == "device_id":
        try:
            return str(uuid.UUID(value.lower()))
        except ValueError:
            return value.lower()
    return value


class Indexed:
    """The dataset read back from its files: sellers' canonical indicators and who holds each."""

    def __init__(self, out_dir: Path) -> None:
        self.truth = json.loads((out_dir / "truth.json").read_text())
        self.platforms = json.loads((out_dir / "platforms.json").read_text())
        self.region = {platform["slug"]: platform["default_region"] for platform in self.platforms}
        self.rows: list[tuple[str, dict[str, str]]] = []
        self.indicators: dict[Key, set[tuple[str, str]]] = defaultdict(set)
        self.holders: dict[tuple[str, str], set[Key]] = defaultdict(set)
        for platform in self.platforms:
            slug = platform["slug"]
            with (out_dir / f"{slug}.csv").open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                assert tuple(reader.fieldnames or ()) == CSV_HEADER
                for row in reader:
                    self.rows.append((slug, row))
                    indicator = (row["kind"], canonical(row["kind"], row["value"], self.region[slug]))
                    key = (slug, row["seller_ref"])
                    self.indicators[key].add(indicator)
                    self.holders[indicator].add(key)
        self.ring_of: dict[Key, int] = {}
        for ring in self.truth["rings"]:
            for member in ring["members"]:
                self.ring_of[(member["platform"], member["seller_ref"])] = ring["id"]

    def suppressed(self, indicator: tuple[str, str]) -> bool:
        return len(self.holders[indicator]) > DEFAULT_THRESHOLDS[indicator[0]]

    def clusters(self, *, without: Iterable[Key] = ()) -> list[set[Key]]:
        """Reference linking: a shared strong indicator, or two shared weak ones, below the thresholds."""
        excluded = set(without)
        parent: dict[Key, Key] = {key: key for key in self.indicators if key not in excluded}

        def find(key: Key) -> Key:
            while parent[key] != key:
                parent[key] = parent[parent[key]]
                key = parent[key]
            return key

        weak_shared: dict[tuple[Key, Key], set[str]] = defaultdict(set)
        for indicator, holders in self.holders.items():
            members = sorted(holders - excluded)
            if len(members) < 2 or self.suppressed(indicator):
                continue
            if indicator[0] in STRONG_KINDS:
                for other in members[1:]:
                    parent[find(other)] = find(members[0])
            else:
                for i, first in enumerate(members):
                    for second in members[i + 1 :]:
                        weak_shared[(first, second)].add(indicator[1] + "\0" + indicator[0])
        for (first, second), shared in weak_shared.items():
            if len(shared) >= 2:
                parent[find(second)] = find(first)
        groups: dict[Key, set[Key]] = defaultdict(set)
        for key in parent:
            groups[find(key)].add(key)
        return [group for group in groups.values() if len(group) >= 2]


def write(dataset: Dataset, out_dir: Path) -> Path:
    dataset.write(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(demo(7), tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def indexed(demo_dir: Path) -> Indexed:
    return Indexed(demo_dir)


def files(out_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out_dir.iterdir())}


# --------------------------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_writes_byte_identical_files(demo_dir: Path, tmp_path: Path) -> None:
    assert files(write(demo(7), tmp_path / "again")) == files(demo_dir)


def test_different_seed_writes_different_files(demo_dir: Path, tmp_path: Path) -> None:
    other = files(write(demo(8), tmp_path / "other"))
    assert other.keys() == files(demo_dir).keys()
    assert all(
        other[name] != content for name, content in files(demo_dir).items() if name != "platforms.json"
    )


def test_streaming_twice_yields_the_same_rows() -> None:
    dataset = generate(3, platforms=3, sellers=400, rings=7)
    first = list(dataset.rows())
    assert first == list(dataset.rows())
    assert all(isinstance(row, Row) for row in first)


# --------------------------------------------------------------------------------------------------------------
# CSV shape and valid values


def test_every_row_has_a_valid_status_reasons_kind_and_a_past_timezone_aware_date(indexed: Indexed) -> None:
    oldest = DEFAULT_NOW - timedelta(days=301)
    for _, row in indexed.rows:
        assert row["status"] in STATUSES
        reasons = row["reasons"].split("|")
        assert reasons and set(reasons) <= set(REASONS) and len(set(reasons)) == len(reasons)
        assert row["kind"] in KINDS
        assert row["value"].strip()
        reported_at = datetime.fromisoformat(row["reported_at"])
        assert reported_at.utcoffset() == timedelta(0)
        assert oldest < reported_at < DEFAULT_NOW


def test_a_sellers_rows_agree_on_status_reasons_and_date(indexed: Indexed) -> None:
    meta: dict[Key, tuple[str, str, str]] = {}
    for slug, row in indexed.rows:
        seen = meta.setdefault((slug, row["seller_ref"]), (row["status"], row["reasons"], row["reported_at"]))
        assert seen == (row["status"], row["reasons"], row["reported_at"])
    assert len(meta) == indexed.truth["sellers"] == 3000
    assert len(indexed.rows) == indexed.truth["rows"]


def test_sellers_have_about_five_indicators(indexed: Indexed) -> None:
    assert 4.0 < len(indexed.rows) / len(indexed.indicators) < 6.5


def test_phone_numbers_are_valid_in_their_platforms_region(indexed: Indexed) -> None:
    phones = [(slug, row["value"]) for slug, row in indexed.rows if row["kind"] == "phone"]
    assert len(phones) > 1000
    national = 0
    for slug, value in phones:
        number = phonenumbers.parse(value, indexed.region[slug])
        assert phonenumbers.is_valid_number(number), value
        national += not value.startswith(("+", "00"))
    assert national > 100  # national formats are really exercised


def test_ibans_have_valid_checksums(indexed: Indexed) -> None:
    ibans = [row["value"] for _, row in indexed.rows if row["kind"] == "bank_account"]
    assert len(ibans) > 500
    assert all(stdnum_iban.is_valid(value) for value in ibans)
    assert any(" " in value for value in ibans) and any(value != value.upper() for value in ibans)


def test_iban_check_digits_match_a_published_example() -> None:
    assert iban_check_digits("GB", "WEST12345698765432") == "82"
    assert iban_check_digits("DE", "370400440532013000") == "89"


def test_european_vat_numbers_have_valid_check_digits(indexed: Indexed) -> None:
    tax_ids = [canonical("tax_id", row["value"], "") for _, row in indexed.rows if row["kind"] == "tax_id"]
    checked = [value for value in tax_ids if value[:2] in ("DE", "FR", "GB")]
    assert len(checked) > 100
    for value in checked:
        assert gb_vat.is_valid(value) if value.startswith("GB") else eu_vat.is_valid(value), value


def test_values_are_written_in_varied_spellings(indexed: Indexed) -> None:
    values = defaultdict(list)
    for _, row in indexed.rows:
        values[row["kind"]].append(row["value"])
    assert any("+" in value.split("@")[0] for value in values["email"])
    assert any("googlemail.com" in value for value in values["email"])
    assert any(value.startswith("https://www.") for value in values["website_domain"])
    assert any(re.search(r"\b(St|Rd|Ave)\b", value, re.IGNORECASE) for value in values["shipping_address"])
    assert any(value.startswith("0x") and value[2:].isupper() for value in values["crypto_wallet"])
    assert any(unicodedata.normalize("NFKC", value) != value for value in values["store_name"])


# --------------------------------------------------------------------------------------------------------------
# Planted truth


def test_demo_has_five_named_marketplaces_a_dozen_rings_hubs_and_one_retraction(indexed: Indexed) -> None:
    assert [platform["default_region"] for platform in indexed.platforms] == ["DE", "GB", "FR", "US", "NL"]
    assert all(platform["name"] and platform["slug"] for platform in indexed.platforms)
    assert len(indexed.truth["rings"]) == 12
    shapes = {ring["shape"] for ring in indexed.truth["rings"]}
    assert {"shared_iban", "email_rotation_same_phone", "weak_address_and_store", "chain"} <= shapes
    assert all(ring["label"].startswith(f"Ring {ring['id']}: ") for ring in indexed.truth["rings"])
    assert "shipping_address" in {hub["kind"] for hub in indexed.truth["hubs"]}
    [retraction] = indexed.truth["retractions"]
    assert retraction["reason"] and retraction["effect"]


def test_ring_members_span_at_least_two_platforms_except_the_same_platform_pair(indexed: Indexed) -> None:
    for ring in indexed.truth["rings"]:
        platforms = {member["platform"] for member in ring["members"]}
        if ring["shape"] == "same_platform_pair":
            assert len(platforms) == 1 and not ring["cross_platform"]
        else:
            assert 2 <= len(platforms) <= 4 and ring["cross_platform"], ring["label"]


def test_shared_iban_ring_spans_three_platforms(indexed: Indexed) -> None:
    ring = next(ring for ring in indexed.truth["rings"] if ring["shape"] == "shared_iban")
    assert len({member["platform"] for member in ring["members"]}) == 3
    assert [link["kind"] for link in ring["links"]] == ["bank_account"]


def test_each_ring_link_is_one_canonical_value_written_differently(indexed: Indexed) -> None:
    varied = 0
    for ring in indexed.truth["rings"]:
        for link in ring["links"]:
            members = [ring["members"][index] for index in link["members"]]
            canonicals = {
                canonical(link["kind"], example, indexed.region[member["platform"]])
                for member, example in zip(members, link["examples"], strict=True)
            }
            assert len(canonicals) == 1, (ring["label"], link)
            [value] = canonicals
            for member in members:
                assert (link["kind"], value) in indexed.indicators[(member["platform"], member["seller_ref"])]
            varied += len(set(link["examples"])) > 1
    assert varied >= 8


def test_weak_rings_share_exactly_their_two_weak_signals(indexed: Indexed) -> None:
    for ring in indexed.truth["rings"]:
        if not ring["shape"].startswith("weak_"):
            continue
        keys = [(member["platform"], member["seller_ref"]) for member in ring["members"]]
        shared = set.intersection(*(indexed.indicators[key] for key in keys))
        linking = {kind for kind, value in shared if not indexed.suppressed((kind, value))}
        assert linking == {link["kind"] for link in ring["links"]}
        assert len(linking) == 2 and not linking & set(STRONG_KINDS)


def test_hubs_are_comfortably_above_their_thresholds_and_reach_ring_members(indexed: Indexed) -> None:
    for hub in indexed.truth["hubs"]:
        assert hub["threshold"] == DEFAULT_THRESHOLDS[hub["kind"]]
        assert hub["sellers"] >= 1.5 * hub["threshold"], hub
        slug = indexed.platforms[0]["slug"]
        holders = indexed.holders[(hub["kind"], canonical(hub["kind"], hub["value"], indexed.region[slug]))]
        assert len(holders) == hub["sellers"], hub["description"]
    warehouse = next(hub for hub in indexed.truth["hubs"] if hub["kind"] == "shipping_address")
    assert warehouse["sellers"] >= 40 and warehouse["ring_members"] >= 2


def test_outside_the_hubs_only_ring_members_share_indicators(indexed: Indexed) -> None:
    for indicator, holders in indexed.holders.items():
        if len(holders) < 2 or indexed.suppressed(indicator):
            continue
        rings = {indexed.ring_of.get(key) for key in holders}
        assert len(rings) == 1 and None not in rings, (indicator, holders)


def test_reference_linking_recovers_exactly_the_rings(indexed: Indexed) -> None:
    predicted = indexed.clusters()
    truth = [
        {(member["platform"], member["seller_ref"]) for member in ring["members"]}
        for ring in indexed.truth["rings"]
    ]
    assert sorted(map(sorted, predicted)) == sorted(map(sorted, truth))
    assert pairwise_precision_recall(predicted, truth) == (1.0, 1.0)
    assert no_hub_glue(predicted, truth)


def test_after_the_retraction_the_seller_is_in_no_cluster_and_its_ring_still_clusters(
    indexed: Indexed,
) -> None:
    [retraction] = indexed.truth["retractions"]
    retracted = (retraction["platform"], retraction["seller_ref"])
    ring = next(ring for ring in indexed.truth["rings"] if ring["id"] == retraction["ring_id"])
    rest = {(m["platform"], m["seller_ref"]) for m in ring["members"]} - {retracted}
    assert retracted in indexed.ring_of and len(rest) >= 2
    after = indexed.clusters(without=[retracted])
    assert rest in after
    assert all(retracted not in cluster for cluster in after)
    assert len(after) == len(indexed.truth["rings"])


def test_expected_clusters_drops_retracted_sellers() -> None:
    dataset = demo(7)
    [retraction] = dataset.truth.retractions
    before = expected_clusters(dataset.truth, after_retractions=False)
    after = expected_clusters(dataset.truth)
    assert sum(map(len, before)) == sum(map(len, after)) + 1
    assert all(retraction.key not in cluster for cluster in after)


def test_larger_generic_datasets_keep_their_promises(tmp_path: Path) -> None:
    dataset = generate(11, platforms=7, sellers=12_000, rings=30, retractions=2)
    assert {platform.slug for platform in dataset.platforms} >= {"platform-6", "platform-7"}
    indexed = Indexed(write(dataset, tmp_path))
    truth = [set(cluster) for cluster in expected_clusters(dataset.truth, after_retractions=False)]
    predicted = indexed.clusters()
    assert sorted(map(sorted, predicted)) == sorted(map(sorted, truth))
    retracted = [retraction.key for retraction in dataset.truth.retractions]
    after = indexed.clusters(without=retracted)
    assert sorted(map(sorted, after)) == sorted(map(sorted, expected_clusters(dataset.truth)))
    assert all(hub.sellers > 1.5 * hub.threshold for hub in dataset.truth.hubs)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_other_seeds_plant_the_same_kind_of_truth(seed: int, tmp_path: Path) -> None:
    dataset = generate(seed, platforms=4, sellers=1500, rings=9, retractions=1)
    indexed = Indexed(write(dataset, tmp_path))
    assert sorted(map(sorted, indexed.clusters())) == sorted(
        map(sorted, expected_clusters(dataset.truth, after_retractions=False))
    )
    [retraction] = dataset.truth.retractions
    after = indexed.clusters(without=[retraction.key])
    assert sorted(map(sorted, after)) == sorted(map(sorted, expected_clusters(dataset.truth)))


def test_hubs_can_be_left_out_and_sizes_are_checked() -> None:
    assert generate(1, platforms=2, sellers=30, rings=3, hubs=False).truth.hubs == ()
    with pytest.raises(ValueError, match="hubs need"):
        generate(1, platforms=2, sellers=30, rings=3)
    with pytest.raises(ValueError, match="cannot hold"):
        generate(1, platforms=2, sellers=5, rings=3, hubs=False)
    with pytest.raises(ValueError, match="timezone"):
        generate(1, now=datetime(2025, 1, 1))


def test_a_later_now_moves_every_date(tmp_path: Path) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    dates = [row.reported_at for row in generate(2, platforms=2, sellers=300, rings=2, now=now).rows()]
    assert all(now - timedelta(days=300) <= date < now for date in dates)


# --------------------------------------------------------------------------------------------------------------
# Evaluation helpers


A1, A2, A3 = ("a", "1"), ("a", "2"), ("b", "3")
B1, B2 = ("c", "4"), ("d", "5")
X = ("e", "benign")


def test_precision_and_recall_are_perfect_for_a_perfect_prediction() -> None:
    assert pairwise_precision_recall([[A1, A2, A3], [B1, B2]], [[A1, A2, A3], [B1, B2]]) == (1.0, 1.0)


def test_a_split_ring_loses_recall_but_not_precision() -> None:
    # Truth pairs: 3 (A) + 1 (B); predicted pairs: A1-A2 and B1-B2, both right.
    assert pairwise_precision_recall([[A1, A2], [A3], [B1, B2]], [[A1, A2, A3], [B1, B2]]) == (1.0, 0.5)


def test_a_glued_cluster_loses_precision() -> None:
    # Predicted pairs: 10 within one cluster of 5; 4 of them are true (3 in A, 1 in B).
    precision, recall = pairwise_precision_recall([[A1, A2, A3, B1, B2]], [[A1, A2, A3], [B1, B2]])
    assert (precision, recall) == (0.4, 1.0)


def test_empty_predictions_and_truth() -> None:
    assert pairwise_precision_recall([], [[A1, A2]]) == (1.0, 0.0)
    assert pairwise_precision_recall([[A1, A2]], []) == (0.0, 1.0)
    assert pairwise_precision_recall([], []) == (1.0, 1.0)


def test_glue_is_found_between_rings_and_with_benign_sellers() -> None:
    truth = [[A1, A2, A3], [B1, B2]]
    assert no_hub_glue([[A1, A2], [B1, B2], [X]], truth)
    [between] = find_glued_clusters([[A1, B1]], truth)
    assert between.ring_ids == {0, 1} and not between.outsiders
    [benign] = find_glued_clusters([[A1, A2, X]], truth)
    assert benign.outsiders == {X}
    assert not no_hub_glue([[X, ("f", "other")]], truth)


# --------------------------------------------------------------------------------------------------------------
# Command line


def test_cli_writes_one_csv_per_platform_platforms_json_and_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--seed", "5", "--out", str(tmp_path), "--sellers", "500", "--platforms", "3", "--rings", "4"])
        == 0
    )
    platforms = json.loads((tmp_path / "platforms.json").read_text())
    assert [set(platform) for platform in platforms] == [{"slug", "name", "default_region"}] * 3
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"{platform['slug']}.csv" for platform in platforms] + ["platforms.json", "truth.json"]
    )
    output = capsys.readouterr().out
    for word in ("platforms: 3", "sellers:   500", "rows:", "rings:     4", "hubs:      6"):
        assert word in output


def test_cli_demo(tmp_path: Path, demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "7", "--out", str(tmp_path), "--demo"]) == 0
    assert files(tmp_path) == files(demo_dir)
    assert "retractions: 1" in capsys.readouterr().out
