"""Benchmark fuzzy matching: 1,000 new encodings against N stored, blocked (exchange.fuzzy_blocking) vs all pairs.

Not a test: ``python tests/bench/bench_fuzzy_blocking.py --sizes 10000,100000 --kinds person_name,shipping_address``
(default: ``--sizes 10000``). At 1,000,000 stored the data generation takes minutes (a CLK per value in
Python) and the index about 8 bytes per band and row (48 bands for addresses, 100 for names).

Data (fixtures.corruption, seeded): the first 1,000 stored values are clean values whose corrupted versions
(1-3 modifications each) are the 1,000 new ones; the other N - 1,000 stored values are further clean values
from the same generator. A (new, stored) pair is true when both come from the same clean value (the small
name vocabularies make some stored values identical; those pairs count as true too). New and true stored
encodings are made with ``exchange.fuzzy.encode``; the filler is the plain CLK (``exchange.fuzzy.clk``) with
the same rate of random bit flips drawn by numpy, which has the same distribution and is much faster.

For each kind and size it prints:

- ``index``: building the ``BlockingIndex`` of the stored side (once per rebuild; queries reuse it);
- ``query``: blocking the 1,000 new against it and scoring the candidates with Dice (``BlockingIndex.query``);
- ``candidates``: pairs scored, and their share of all pairs;
- ``kept``: pairs at or above the kind's threshold; ``true kept`` of them true;
- ``blocking recall``: true pairs kept / true pairs the all-pairs floor keeps at the threshold (<= --brute-max);
- ``recall``: true pairs kept / all true pairs; ``precision``: true pairs kept / pairs kept;
- ``floor``: the all-pairs Dice comparison's time (numpy, same scoring code), up to ``--brute-max`` stored.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange import fuzzy
from exchange import fuzzy_blocking as fb
from fixtures import corruption

KEY = b"benchmark key, never for real data"


def clean_values(kind: str, n: int, seed: int) -> list[str]:
    if kind == "person_name":
        return corruption.people(n, seed)
    if kind == "business_name":
        return [clean for clean, _ in corruption.corrupted_pairs(kind, n, seed)]
    return corruption.addresses(n, seed)


def corrupt(kind: str, value: str, rng: random.Random) -> str:
    return (
        corruption.corrupt_address(value, rng)
        if kind.endswith("_address")
        else corruption.corrupt_name(value, rng)
    )


def build(
    kind: str, size: int, n_new: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    values = clean_values(kind, size, seed)
    rng = random.Random(seed)
    new = [
        fuzzy.encode(kind, corrupt(kind, v, rng), KEY, b"new-%d" % i) for i, v in enumerate(values[:n_new])
    ]
    stored_true = [fuzzy.encode(kind, v, KEY, b"stored-%d" % i) for i, v in enumerate(values[:n_new])]
    filler = fb.to_matrix([fuzzy.clk(kind, v, KEY) for v in values[n_new:]]).copy()
    noise_rng = np.random.default_rng(seed)
    for start in range(0, len(filler), 65_536):  # in chunks: a million rows of float noise at once is 8 GB
        rows = filler[start : start + 65_536]
        flips = noise_rng.random((len(rows), fuzzy.FILTER_BITS), dtype=np.float32) < fuzzy.FLIP_PROBABILITY
        filler[start : start + 65_536] = rows ^ np.packbits(flips, axis=1)
    stored = np.concatenate([fb.to_matrix(stored_true), filler])
    labels = np.unique(np.array(values, dtype=object), return_inverse=True)[1]
    return fb.to_matrix(new), stored, labels[:n_new], labels


def all_pairs(new: np.ndarray, stored: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    kept = []
    for i in range(len(new)):
        pairs = np.stack([np.full(len(stored), i), np.arange(len(stored))], axis=1)
        scores = fb.dice_pairs(new, stored, pairs)
        kept.append(pairs[scores >= threshold])
    return np.concatenate(kept), time.perf_counter() - start


def run(kind: str, size: int, n_new: int, brute_max: int, seed: int) -> None:
    threshold = fuzzy.DEFAULT_THRESHOLDS[kind]
    lsh = fb.LSH_BY_KIND[kind]
    t0 = time.perf_counter()
    new, stored, new_labels, stored_labels = build(kind, size, n_new, seed)
    t_data = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = fb.BlockingIndex(stored, lsh)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept = index.query(new, threshold)
    t_query = time.perf_counter() - t0
    n_candidates = len(index.candidates(new))

    kept_pairs = np.array([(i, j) for i, j, _ in kept], dtype=np.int64).reshape(-1, 2)
    is_true = new_labels[kept_pairs[:, 0]] == stored_labels[kept_pairs[:, 1]]
    true_kept = int(is_true.sum())
    counts = np.bincount(stored_labels, minlength=int(stored_labels.max()) + 1)
    all_true = int(counts[new_labels].sum())
    line = (
        f"{kind:16} N={size:>9,} data {t_data:6.1f}s  index {t_index:6.2f}s  query {t_query:6.3f}s  "
        f"candidates {n_candidates:>10,} ({n_candidates / (len(new) * size):.4f})  kept {len(kept):>8,}  "
        f"true kept {true_kept:>6,}  recall {true_kept / all_true:.4f}  precision {true_kept / max(1, len(kept)):.4f}"
    )
    if size <= brute_max:
        floor, t_floor = all_pairs(new, stored, threshold)
        floor_true = int((new_labels[floor[:, 0]] == stored_labels[floor[:, 1]]).sum())
        line += f"  blocking recall {true_kept / max(1, floor_true):.4f}  floor {t_floor:6.2f}s"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated stored sizes (default 10000)")
    parser.add_argument("--kinds", default="person_name,shipping_address")
    parser.add_argument("--new", type=int, default=1000, help="new encodings per run (default 1000)")
    parser.add_argument(
        "--brute-max", type=int, default=100_000, help="largest size with the all-pairs floor"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            run(kind, size, args.new, args.brute_max, args.seed)
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
