"""Benchmark the whole linking (exact + fuzzy) against the exact-only baseline, in one run (issue 14).

Not a test (tests/bench/test_bench_fuzzy_linking.py runs its core at a small size):
``python tests/bench/bench_fuzzy_linking.py --actors 1000 --background 10000`` (the defaults; about 3 minutes).

Data: ``fixtures.linkage.population`` (seeded): actors with 1-3 accounts on different platforms, names and
addresses corrupted between an actor's accounts, some exact strong ids or store names reused, and unrelated
background sellers from the same populations of names and streets. Truth: same actor.

What the server would hold, built in memory:

- exact sightings: the strong ids, the store name and the shipping address (its normalised value's SHA-256
  as the token: ``exchange.normalization``, what the keyed token is a function of);
- fuzzy sightings: each record's name, business name and shipping address encoded by the partner's
  ``exchange.fuzzy.encode`` (one consortium key, the seller as record salt), grouped per wire kind by
  ``exchange.matching.fuzzy_evidence`` at the kind's Dice threshold (the store's groups: around centres, an
  encoding joining the centre it matches best, found through the LSH index), each group one indicator of the
  wire kind, and each *direct match* (two encodings in different groups matching each other 0.03 above the
  threshold, ``exchange.matching.direct_matches``) one more, held by its two sellers.

The linking core (``graph.linking.link``, default strengths and hub thresholds) runs twice: *exact* on the
exact sightings, *exact+fuzzy* on both, as partners send them: an address as its exact token and its fuzzy
encoding, which the core's family rule counts as one piece of weak evidence, not two. (Groups form around
centres, so two identical addresses can fall in two groups; their exact token still links them: printed as
``exact address pairs outside one fuzzy group``.)

Measured on cross-platform seller pairs (both sellers in one cluster = found), split into (a) pairs whose two
records both carry a name of one kind (person or business) and a shipping address, (b) all other pairs:
true pairs, found, true found, precision, recall, per mode. Then why the (a) pairs the exact+fuzzy run misses
are missed (the corruptions drawn, Dice of the encodings, groups suppressed as hubs), the Dice threshold curve
of the person name and the shipping address (the other kinds at their defaults), and timings.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange import fuzzy, normalization
from exchange.contract import FUZZY_ENCODING_KIND
from exchange.matching import MATCHERS, Item, fuzzy_evidence
from fixtures.linkage import SellerRecord, population
from graph.linking import Sighting, link

KEY = b"benchmark consortium key, never for real data"

# The wire kinds measured, and the record field each encodes.
FUZZY_FIELDS: dict[str, str] = {
    "person_name": "person_name",
    "business_name": "business_name",
    "shipping_address_fuzzy": "shipping_address",
}

SPLITS = ("a", "b")


def default_thresholds() -> dict[str, float]:
    return {kind: fuzzy.DEFAULT_THRESHOLDS[FUZZY_ENCODING_KIND[kind]] for kind in FUZZY_FIELDS}


def _address_token(value: str) -> str:
    return hashlib.sha256(normalization.normalize("shipping_address", value).encode()).hexdigest()


def exact_sightings(records: Sequence[SellerRecord]) -> list[Sighting]:
    out = []
    for r in records:
        for kind, value in r.strong:
            out.append(Sighting(r.seller_id, r.platform_id, kind, value))
        if r.store_name is not None:
            out.append(
                Sighting(
                    r.seller_id,
                    r.platform_id,
                    "store_name",
                    normalization.normalize("store_name", r.store_name),
                )
            )
        if r.shipping_address is not None:
            out.append(
                Sighting(r.seller_id, r.platform_id, "shipping_address", _address_token(r.shipping_address))
            )
    return out


@dataclass
class Encoded:
    """One wire kind's encodings: the sellers holding one, in record order, and their items."""

    sellers: list[int]
    items: list[Item]


def encode_all(records: Sequence[SellerRecord]) -> dict[str, Encoded]:
    out: dict[str, Encoded] = {}
    for kind, attribute in FUZZY_FIELDS.items():
        spec_kind = FUZZY_ENCODING_KIND[kind]
        encoded = Encoded([], [])
        for r in records:
            value = getattr(r, attribute)
            if value is None:
                continue
            salt = f"p{r.platform_id}-s{r.seller_id}".encode()
            encoded.sellers.append(r.seller_id)
            encoded.items.append(Item(kind, fuzzy.encode(spec_kind, value, KEY, salt).hex()))
        out[kind] = encoded
    return out


@dataclass
class Grouped:
    """One wire kind as the store forms it: seller -> the seller id of the first member of its near-duplicate
    group (the group's identity), and the direct matches across groups as (older seller, newer seller)."""

    labels: dict[int, int]
    direct: list[tuple[int, int]]


def group(kind: str, encoded: Encoded, threshold: float) -> Grouped:
    labels, direct = fuzzy_evidence(MATCHERS[kind], encoded.items, threshold)
    sellers = encoded.sellers
    return Grouped(
        {seller: sellers[label] for seller, label in zip(sellers, labels, strict=True)},
        [(sellers[b], sellers[a]) for a, b, _ in direct],
    )


def matched_pairs(kind: str, encoded: Encoded, threshold: float) -> list[tuple[int, int]]:
    """The (seller, seller) pairs at or above the threshold, found through the index keys exactly as
    ``group_labels`` finds them, but kept as pairs instead of being closed into connected components."""
    rule = MATCHERS[kind]
    under: dict[int, list[int]] = defaultdict(list)
    pairs = []
    for i, item in enumerate(encoded.items):
        earlier = sorted({j for key in rule.probe_keys(item, threshold) for j in under.get(key, ())})
        for j, score in zip(earlier, rule.scores(item, [encoded.items[j] for j in earlier]), strict=True):
            if rule.matches(score, threshold):
                pairs.append((encoded.sellers[j], encoded.sellers[i]))
        for key in rule.index_keys(item):
            under[key].append(i)
    return pairs


def pair_sightings(
    records: Sequence[SellerRecord], pairs: Mapping[str, Iterable[tuple[int, int]]]
) -> list[Sighting]:
    """One indicator per matched pair, held by its two sellers: evidence between those two only."""
    platform = {r.seller_id: r.platform_id for r in records}
    return [
        Sighting(seller, platform[seller], kind, f"{a}-{b}")
        for kind, matched in pairs.items()
        for a, b in matched
        for seller in (a, b)
    ]


def fuzzy_sightings(records: Sequence[SellerRecord], groups: Mapping[str, Grouped]) -> list[Sighting]:
    platform = {r.seller_id: r.platform_id for r in records}
    return [
        Sighting(seller, platform[seller], kind, f"g{label}")
        for kind, grouped in groups.items()
        for seller, label in grouped.labels.items()
    ] + [
        Sighting(seller, platform[seller], kind, f"d{a}-{b}")
        for kind, grouped in groups.items()
        for a, b in grouped.direct
        for seller in (a, b)
    ]


def cluster_labels(n: int, sightings: Iterable[Sighting]) -> tuple[list[int], set[tuple[str, object]]]:
    """Per seller its cluster's smallest member (-1 alone), and the (kind, token) suppressed as hubs."""
    linkage = link(sightings)
    labels = [-1] * n
    for cluster in linkage.clusters:
        for member in cluster.members:
            labels[member] = cluster.members[0]
    return labels, {s.indicator for s in linkage.suppressed}


def split_of(a: SellerRecord, b: SellerRecord) -> str:
    """(a): both records carry a name of one kind and a shipping address; (b): every other pair."""
    named = (a.person_name is not None and b.person_name is not None) or (
        a.business_name is not None and b.business_name is not None
    )
    return "a" if named and a.shipping_address is not None and b.shipping_address is not None else "b"


def true_pairs(records: Sequence[SellerRecord]) -> list[tuple[int, int]]:
    by_actor: dict[int, list[int]] = defaultdict(list)
    for r in records:
        by_actor[r.actor].append(r.seller_id)
    return [pair for members in by_actor.values() for pair in combinations(sorted(members), 2)]


@dataclass
class Quality:
    true: int = 0
    found: int = 0
    true_found: int = 0

    @property
    def precision(self) -> float:
        return self.true_found / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.true_found / self.true if self.true else 1.0


def _record_type(r: SellerRecord) -> tuple[bool, bool, bool]:
    return (r.person_name is not None, r.business_name is not None, r.shipping_address is not None)


def measure(
    records: Sequence[SellerRecord], labels: Sequence[int], truth: Sequence[tuple[int, int]]
) -> dict[str, Quality]:
    """Pairwise quality on cross-platform pairs per split. Found pairs are counted per cluster from the
    counts of (record type, platform), never by listing the pairs of a large cluster."""
    quality = {split: Quality() for split in SPLITS}
    for i, j in truth:
        split = split_of(records[i], records[j])
        quality[split].true += 1
        if labels[i] != -1 and labels[i] == labels[j]:
            quality[split].true_found += 1
    samples: dict[tuple[bool, bool, bool], SellerRecord] = {}  # one record per type, for split_of
    per_cluster: dict[int, Counter[tuple[tuple[bool, bool, bool], int]]] = defaultdict(Counter)
    for r in records:
        if labels[r.seller_id] != -1:
            kind = _record_type(r)
            samples.setdefault(kind, r)
            per_cluster[labels[r.seller_id]][(kind, r.platform_id)] += 1
    for counts in per_cluster.values():
        by_type: Counter[tuple[bool, bool, bool]] = Counter()
        for (kind, _platform), n in counts.items():
            by_type[kind] += n
        types = sorted(by_type)
        for x, t in enumerate(types):
            for u in types[x:]:
                same_platform = sum(n * counts.get((u, p), 0) for (k, p), n in counts.items() if k == t)
                pairs = (
                    (by_type[t] ** 2 - same_platform) // 2
                    if t == u
                    else by_type[t] * by_type[u] - same_platform
                )
                quality[split_of(samples[t], samples[u])].found += pairs
    return quality


@dataclass
class Run:
    mode: str
    quality: dict[str, Quality]
    link_seconds: float
    clusters: int
    largest: int
    suppressed: set[tuple[str, object]] = field(default_factory=set)


def run_mode(
    mode: str, records: Sequence[SellerRecord], sightings: list[Sighting], truth: Sequence[tuple[int, int]]
) -> tuple[Run, list[int]]:
    t0 = time.perf_counter()
    labels, suppressed = cluster_labels(len(records), sightings)
    seconds = time.perf_counter() - t0
    sizes = Counter(label for label in labels if label != -1)
    run = Run(
        mode, measure(records, labels, truth), seconds, len(sizes), max(sizes.values(), default=0), suppressed
    )
    return run, labels


@dataclass
class Result:
    records: list[SellerRecord]
    truth: list[tuple[int, int]]
    encoded: dict[str, Encoded]
    groups: dict[str, Grouped]
    exact: Run
    fuzzy: Run
    fuzzy_labels: list[int]
    pairwise: Run | None  # fuzzy evidence as matched pairs instead of groups (what the store does not do)
    pairwise_labels: list[int]
    exact_count: int
    fuzzy_count: int
    seconds: dict[str, float]
    family_outside: int  # pairs sharing an exact address token that are not in one fuzzy address group


def evaluate(
    actors: int,
    background: int,
    seed: int,
    thresholds: Mapping[str, float] | None = None,
    *,
    pairwise: bool = True,
    progress: bool = False,
) -> Result:
    """The whole comparison at one size (module docstring)."""
    thresholds = {**default_thresholds(), **(thresholds or {})}
    seconds: dict[str, float] = {}

    def note(text: str) -> None:
        if progress:
            print(text, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    records = population(actors, background, seed)
    truth = true_pairs(records)
    seconds["generate"] = time.perf_counter() - t0
    note(f"generated {len(records):,} sellers, {len(truth):,} true pairs in {seconds['generate']:.1f}s")

    t0 = time.perf_counter()
    exact = exact_sightings(records)
    seconds["exact sightings"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    encoded = encode_all(records)
    seconds["encode"] = time.perf_counter() - t0
    note(f"encoded {sum(len(e.items) for e in encoded.values()):,} values in {seconds['encode']:.1f}s")

    groups = {}
    for kind, enc in encoded.items():
        t0 = time.perf_counter()
        groups[kind] = group(kind, enc, thresholds[kind])
        seconds[f"group {kind}"] = time.perf_counter() - t0
        note(f"grouped {kind} at {thresholds[kind]:.2f} in {seconds[f'group {kind}']:.1f}s")

    with_fuzzy = exact + fuzzy_sightings(records, groups)
    exact_run, _ = run_mode("exact", records, exact, truth)
    fuzzy_run, fuzzy_labels = run_mode("exact+fuzzy", records, with_fuzzy, truth)
    seconds["link exact"] = exact_run.link_seconds
    seconds["link exact+fuzzy"] = fuzzy_run.link_seconds
    pairwise_run: Run | None = None
    pairwise_labels: list[int] = []
    if pairwise:
        t0 = time.perf_counter()
        pairs = {kind: matched_pairs(kind, enc, thresholds[kind]) for kind, enc in encoded.items()}
        seconds["pairs"] = time.perf_counter() - t0
        by_pairs = exact + pair_sightings(records, pairs)
        pairwise_run, pairwise_labels = run_mode("pairwise", records, by_pairs, truth)
        seconds["link pairwise"] = pairwise_run.link_seconds
    return Result(
        records=records,
        truth=truth,
        encoded=encoded,
        groups=groups,
        exact=exact_run,
        fuzzy=fuzzy_run,
        fuzzy_labels=fuzzy_labels,
        pairwise=pairwise_run,
        pairwise_labels=pairwise_labels,
        exact_count=len(exact),
        fuzzy_count=len(with_fuzzy),
        seconds=seconds,
        family_outside=_family_outside(exact, groups["shipping_address_fuzzy"].labels),
    )


def _family_outside(exact: Iterable[Sighting], address_groups: Mapping[int, int]) -> int:
    holders: dict[object, list[int]] = defaultdict(list)
    for s in exact:
        if s.kind == "shipping_address":
            holders[s.token].append(s.seller_id)
    return sum(
        address_groups.get(a) != address_groups.get(b)
        for sellers in holders.values()
        for a, b in combinations(sellers, 2)
    )


def curve(result: Result, kind: str, thresholds: Sequence[float]) -> list[tuple[float, Quality, int]]:
    """Split (a) of exact+fuzzy with ``kind`` regrouped at each threshold (the other kinds as they were), and
    the size of the largest group of ``kind``."""
    exact = exact_sightings(result.records)
    out = []
    for threshold in thresholds:
        groups = {**result.groups, kind: group(kind, result.encoded[kind], threshold)}
        labels, _ = cluster_labels(len(result.records), exact + fuzzy_sightings(result.records, groups))
        largest = max(Counter(groups[kind].labels.values()).values(), default=0)
        out.append((threshold, measure(result.records, labels, result.truth)["a"], largest))
    return out


def _dice(kind: str, result: Result, a: int, b: int) -> float | None:
    enc = result.encoded[kind]
    index = {seller: i for i, seller in enumerate(enc.sellers)}  # small: misses only
    if a not in index or b not in index:
        return None
    return MATCHERS[kind].score(enc.items[index[a]], enc.items[index[b]])


def misses(
    result: Result, labels: Sequence[int], suppressed: set[tuple[str, object]], limit: int = 10
) -> tuple[Counter[str], list[str]]:
    """Why split (a)'s true pairs are missed by exact+fuzzy: per fuzzy kind held by both, whether they are in
    one group and whether that group was suppressed; the corruptions drawn; a few examples (synthetic data)."""
    records = result.records
    sizes: dict[str, Counter[int]] = {kind: Counter(g.labels.values()) for kind, g in result.groups.items()}
    direct = {kind: set(g.direct) for kind, g in result.groups.items()}
    reasons: Counter[str] = Counter()
    examples: list[str] = []
    for i, j in result.truth:
        a, b = records[i], records[j]
        if split_of(a, b) != "a" or (labels[i] != -1 and labels[i] == labels[j]):
            continue
        shared = []
        for kind, grouped in result.groups.items():
            labelled = grouped.labels
            if i in labelled and j in labelled:
                if labelled[i] == labelled[j]:
                    size = sizes[kind][labelled[i]]
                    if (kind, f"g{labelled[i]}") in suppressed:
                        reasons[f"{kind} group suppressed as a hub"] += 1
                    shared.append(f"{kind} (group of {size})")
                elif (min(i, j), max(i, j)) in direct[kind] or (max(i, j), min(i, j)) in direct[kind]:
                    shared.append(f"{kind} direct match")
                else:
                    dice = _dice(kind, result, i, j)
                    reasons[f"{kind} below threshold"] += 1
                    shared.append(f"{kind} apart (Dice {dice:.2f})")
        corruptions = sorted(
            set(a.name_corruptions + b.name_corruptions + a.address_corruptions + b.address_corruptions)
        )
        for corruption in corruptions:
            reasons[f"corruption {corruption}"] += 1
        reasons["missed"] += 1
        if len(examples) < limit:
            examples.append(
                f"  {a.person_name!r} / {b.person_name!r}; {a.business_name!r} / {b.business_name!r}; "
                f"{a.shipping_address!r} / {b.shipping_address!r}: {', '.join(shared) or 'nothing shared'}"
            )
    return Counter({k: v for k, v in reasons.items() if v}), examples


def print_table(result: Result) -> None:
    print(
        f"{'mode':12} {'split':5} {'pairs true':>10} {'found':>8} {'true found':>10} {'precision':>9} {'recall':>7}"
    )
    for run in (result.exact, result.fuzzy, result.pairwise):
        if run is None:
            continue
        for split in SPLITS:
            q = run.quality[split]
            print(
                f"{run.mode:12} {split:5} {q.true:>10,} {q.found:>8,} {q.true_found:>10,} "
                f"{q.precision:>9.4f} {q.recall:>7.4f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--actors", type=int, default=1000, help="actors with 1-3 accounts (default 1000)")
    parser.add_argument("--background", type=int, default=10000, help="unrelated sellers (default 10000)")
    parser.add_argument("--seed", type=int, default=7)
    for kind, threshold in default_thresholds().items():
        parser.add_argument(
            f"--{kind.replace('_', '-')}",
            type=float,
            default=threshold,
            help=f"Dice threshold (default {threshold})",
        )
    parser.add_argument(
        "--curve", default="person_name,shipping_address_fuzzy", help="kinds to sweep ('' for none)"
    )
    parser.add_argument("--curve-points", default="0.6,0.7,0.8,0.9")
    args = parser.parse_args()
    thresholds = {kind: getattr(args, kind) for kind in FUZZY_FIELDS}
    result = evaluate(args.actors, args.background, args.seed, thresholds, progress=True)
    records = result.records
    platforms = len({r.platform_id for r in records})
    print(
        f"sellers {len(records):,} on {platforms} platforms ({args.actors:,} actors, {args.background:,} background); "
        f"true cross-platform pairs {len(result.truth):,}; thresholds "
        + ", ".join(f"{k} {v:.2f}" for k, v in thresholds.items())
    )
    print(
        f"sightings: exact {result.exact_count:,}, exact+fuzzy {result.fuzzy_count:,} (exact address pairs "
        f"outside one fuzzy group, which their exact token still links: {result.family_outside})"
    )
    for kind, grouped in result.groups.items():
        labelled = grouped.labels
        sizes = Counter(labelled.values())
        shared = [n for n in sizes.values() if n > 1]
        print(
            f"  {kind:24} encodings {len(labelled):>7,}  groups of >1: {len(shared):>6,}  largest {max(sizes.values(), default=0):>5,}  "
            f"suppressed as hubs {sum(k == kind for k, _ in result.fuzzy.suppressed):>4,}  "
            f"direct matches {len(grouped.direct):>6,}"
        )
    print_table(result)
    for run in filter(None, (result.exact, result.fuzzy, result.pairwise)):
        print(f"  {run.mode}: clusters {run.clusters:,}, largest {run.largest}")
    print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.seconds.items()))
    for mode, labels, suppressed in (
        ("exact+fuzzy", result.fuzzy_labels, result.fuzzy.suppressed),
        ("pairwise", result.pairwise_labels, set()),  # its groups link nothing: pairs do
    ):
        reasons, examples = misses(result, labels, suppressed) if labels else (Counter(), [])
        if reasons:
            print(
                f"(a) pairs missed by {mode}: {reasons.pop('missed', 0)}; "
                + ", ".join(f"{k} {v}" for k, v in reasons.most_common())
            )
            print("\n".join(examples[:5]))
    points = [float(p) for p in args.curve_points.split(",")]
    for kind in filter(None, args.curve.split(",")):
        print(f"Dice threshold curve, {kind} (split (a), exact+fuzzy, other kinds at their thresholds):")
        for threshold, q, largest in curve(result, kind, points):
            print(
                f"  {threshold:.2f}  precision {q.precision:.4f}  recall {q.recall:.4f}  found {q.found:>8,}  "
                f"largest group {largest:,}",
                flush=True,
            )
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
