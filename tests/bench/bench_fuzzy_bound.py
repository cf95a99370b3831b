"""How far can the fuzzy encodings go on our generator? A bound on any rule over (name Dice, address Dice).

Not a test: ``python tests/bench/bench_fuzzy_bound.py [--seed 1] [--plain]`` (about 30 s and 0.5 GB).

Issue 14 asks for recall >= 0.99 at precision >= 0.99 on cross-platform seller pairs whose records carry a name
and an address (split (a) of tests/bench/bench_fuzzy_linking.py). Whatever the grouping and the thresholds, a
link decided from the two similarities the exchange can compute, the name's Dice and the address's Dice, can
separate a true pair from the false ones only if few false pairs score at least as high on *both*. This script
scores every split-(a) pair of one population (``fixtures.linkage.population``, 1,000 actors and 10,000
background sellers: about 40 million pairs) with the encodings partners send (``exchange.fuzzy.encode``; with
``--plain`` the plain CLK, without the randomised response), and prints:

- per true pair, how many false pairs dominate it (score >= on both): how many true pairs have at most 0, 2, 5
  and 10 dominating false pairs. A true pair with more than 10 cannot be found by any rule that is monotone in
  the two scores without about 10 false pairs coming with it, which at about 900 true pairs is precision 0.99;
- the best rule of the form name >= x and address >= y that admits at most 9 false pairs, and its recall.

Pairs are scored directly (not through the index, not grouped, not linked through other accounts or exact ids),
so this bounds the pairwise decision only: linking can still find a pair through a third account. The name
score is the better of the person's and the business name's Dice where both records carry one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange import fuzzy
from fixtures.linkage import SellerRecord, population
from tests.bench.bench_fuzzy_linking import split_of, true_pairs

KEY = b"benchmark consortium key, never for real data"
FIELDS = (
    ("person_name", "person_name"),
    ("business_name", "business_name"),
    ("shipping_address", "shipping_address"),
)
ROWS = 1000  # rows of the similarity matrices computed at a time


def bits(
    records: list[SellerRecord], attribute: str, kind: str, plain: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1024) float32 bit rows of every record's encoding of `attribute` (zeros where absent), and presence."""
    out = np.zeros((len(records), fuzzy.FILTER_BITS), dtype=np.float32)
    present = np.zeros(len(records), dtype=np.bool_)
    for r in records:
        value = getattr(r, attribute)
        if value is None:
            continue
        salt = f"p{r.platform_id}-s{r.seller_id}".encode()
        encoding = fuzzy.clk(kind, value, KEY) if plain else fuzzy.encode(kind, value, KEY, salt)
        out[r.seller_id] = np.unpackbits(np.frombuffer(encoding, dtype=np.uint8))
        present[r.seller_id] = True
    return out, present


def dice_rows(m: np.ndarray, counts: np.ndarray, start: int, stop: int) -> np.ndarray:
    return 2 * (m[start:stop] @ m.T) / (counts[start:stop, None] + counts[None, :] + 1e-9)


def split_a_pairs(records: list[SellerRecord], plain: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Name and address Dice, and truth, of every split-(a) pair i < j with name >= 0.3 and address >= 0.5 (below
    both, no true pair of the generator falls; the rest cannot dominate anything that matters)."""
    encoded = {attribute: bits(records, attribute, kind, plain) for attribute, kind in FIELDS}
    counts = {attribute: m.sum(axis=1) for attribute, (m, _) in encoded.items()}
    platform = np.array([r.platform_id for r in records])
    actor = np.array([r.actor for r in records])
    has = {attribute: present for attribute, (_, present) in encoded.items()}
    names, addresses, truth = [], [], []
    n = len(records)
    for start in range(0, n, ROWS):
        stop = min(n, start + ROWS)
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(n)[None, :]
        name = np.full((stop - start, n), -1.0, dtype=np.float32)
        for attribute in ("person_name", "business_name"):
            m, present = encoded[attribute]
            both = present[start:stop, None] & present[None, :]
            name = np.where(both, np.maximum(name, dice_rows(m, counts[attribute], start, stop)), name)
        m, present = encoded["shipping_address"]
        address = np.where(
            present[start:stop, None] & present[None, :],
            dice_rows(m, counts["shipping_address"], start, stop),
            -1.0,
        )
        keep = (cols > rows) & (platform[start:stop, None] != platform[None, :])
        keep &= (name >= 0.3) & (address >= 0.5) & (has["shipping_address"][start:stop, None])
        i, j = np.nonzero(keep)
        names.append(name[i, j])
        addresses.append(address[i, j])
        truth.append(actor[start + i] == actor[j])
    return np.concatenate(names), np.concatenate(addresses), np.concatenate(truth)


def true_split_a(records: list[SellerRecord]) -> int:
    """Split-(a) true pairs, counted as the linking bench counts them (the candidates above must hold them all)."""
    return sum(split_of(records[i], records[j]) == "a" for i, j in true_pairs(records))


def dominated(names: np.ndarray, addresses: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per true pair, the false pairs scoring at least as high on both."""
    false_n, false_a = names[~truth], addresses[~truth]
    order = np.argsort(-false_n)
    false_n, false_a = false_n[order], false_a[order]
    out = []
    for x, y in zip(names[truth], addresses[truth], strict=True):
        upto = np.searchsorted(-false_n, -x, side="right")  # the false pairs with name >= x
        out.append(int((false_a[:upto] >= y).sum()))
    return np.array(out)


def best_rectangle(
    names: np.ndarray, addresses: np.ndarray, truth: np.ndarray, false_allowed: int
) -> tuple[int, float, float]:
    """The rule name >= x and address >= y (x, y from the true pairs' scores) finding the most true pairs with
    at most `false_allowed` false ones: (true pairs found, x, y)."""
    best = (0, 1.0, 1.0)
    false_n, false_a = names[~truth], addresses[~truth]
    true_n, true_a = names[truth], addresses[truth]
    for x in np.unique(true_n):
        above = np.sort(false_a[false_n >= x])[::-1]
        y = float(above[false_allowed]) + 1e-6 if len(above) > false_allowed else -1.0
        found = int(((true_n >= x) & (true_a >= y)).sum())
        if found > best[0]:
            best = (found, float(x), max(y, 0.0))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--actors", type=int, default=1000)
    parser.add_argument("--background", type=int, default=10000)
    parser.add_argument("--plain", action="store_true", help="plain CLKs, without the randomised response")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    records = population(args.actors, args.background, args.seed)
    names, addresses, truth = split_a_pairs(records, args.plain)
    expected = true_split_a(records)
    print(
        f"seed {args.seed}, {'plain CLKs' if args.plain else 'encodings as sent'}: {len(records):,} sellers, "
        f"{len(truth):,} split-(a) pairs kept (name >= 0.3, address >= 0.5), true {int(truth.sum())} of "
        f"{expected}",
        file=sys.stderr,
    )
    counts = dominated(names, addresses, truth)
    total = int(truth.sum())
    cells = ", ".join(f"<= {k}: {int((counts <= k).sum())}" for k in (0, 2, 5, 10))
    print(f"true pairs with at most k false pairs dominating them (of {total}): {cells}")
    found, x, y = best_rectangle(names, addresses, truth, 9)
    print(
        f"best rule name >= {x:.3f} and address >= {y:.3f} with at most 9 false pairs: {found} of {total} "
        f"(recall {found / total:.3f})"
    )
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
