"""Benchmark document fingerprints (issue 13's `document` kind): matching quality, LSH recall and timing.

Not a test (the held-out test in tests/exchange/test_documents.py runs a smaller slice of the same
measurement): ``python tests/bench/bench_documents.py`` (``--documents N`` per template, default 200; ``--pdfs
N`` originals per template also rendered as PDFs and read back, default 20; ``--shingles 2,3,4,5,6`` to compare
shingle lengths on the exact Jaccard similarity, the measurement behind ``SHINGLE_WORDS``).

Data: ``fixtures.documents`` on held-out seeds (``HELD_OUT_SEED`` onwards; the shingle length was chosen on
seeds 0-59). Per template, N originals and for each its edited copy (issue 13's edit: another recipient company
name, other dates, another reference number); ``+address`` also changes the recipient's address. The pool of
2N documents per template is compared pair by pair: a pair is predicted a match when the estimated Jaccard
similarity of the keyed MinHash signatures is at least the threshold; the true pairs are (original, its copy),
every other pair is two different letters on the same template (another brand, company, body sentences and
annex, the template's fixed wording shared).

Prints, per edit: recall (true pairs found), precision (found pairs that are true), false matches among the
different-letter pairs, the smallest estimate of a true pair and the largest of a different pair; the LSH
candidate recall (true pairs that share a band key) and the share of different pairs that become candidates;
the S-curve of the banding; and the time to fingerprint one document from text and from PDF.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exchange import documents as dm
from fixtures import documents as fx

HELD_OUT_SEED = 10_000
BENCH_KEY = b"bad-actor-exchange document benchmark key, not a real consortium key"


@dataclass(frozen=True)
class Quality:
    true_pairs: int
    different_pairs: int
    found: int
    false_matches: int
    lowest_true: float
    highest_different: float
    lsh_true: int  # true pairs sharing a band key
    lsh_different: int  # different pairs sharing a band key

    @property
    def recall(self) -> float:
        return self.found / self.true_pairs

    @property
    def precision(self) -> float:
        return self.found / (self.found + self.false_matches) if self.found + self.false_matches else 1.0

    @property
    def lsh_recall(self) -> float:
        return self.lsh_true / self.true_pairs


def evaluate(
    originals: list[str], copies: list[str], key: bytes, threshold: float = dm.DEFAULT_JACCARD_THRESHOLD
) -> Quality:
    """All pairs of the pool originals + copies (texts of one template): copy i is the true pair of original i."""
    texts = originals + copies
    n = len(originals)
    signatures = np.array([dm.signature(text, key) for text in texts], dtype=np.uint32)
    bands = [set(dm.lsh_bands(tuple(int(v) for v in row))) for row in signatures]
    found = false_matches = lsh_true = lsh_different = 0
    lowest_true, highest_different = 1.0, 0.0
    for i in range(len(texts)):
        estimates = (signatures[i + 1 :] == signatures[i]).mean(axis=1)
        for offset, estimate in enumerate(estimates.tolist()):
            j = i + 1 + offset
            is_true = j == i + n
            candidate = not bands[i].isdisjoint(bands[j])
            if is_true:
                lowest_true = min(lowest_true, estimate)
                found += estimate >= threshold
                lsh_true += candidate
            else:
                highest_different = max(highest_different, estimate)
                false_matches += estimate >= threshold
                lsh_different += candidate
    pairs = len(texts) * (len(texts) - 1) // 2
    return Quality(
        n, pairs - n, found, false_matches, lowest_true, highest_different, lsh_true, lsh_different
    )


def pool(
    template: str, count: int, *, address: bool = False, start: int = HELD_OUT_SEED
) -> tuple[list[str], list[str]]:
    docs = [fx.document(seed, template) for seed in range(start, start + count)]
    copies = [fx.edited(doc, random.Random(f"edit {seed}"), address=address) for seed, doc in enumerate(docs)]
    return [fx.render_text(doc) for doc in docs], [fx.render_text(doc) for doc in copies]


def merged(results: list[Quality]) -> Quality:
    return Quality(
        sum(r.true_pairs for r in results),
        sum(r.different_pairs for r in results),
        sum(r.found for r in results),
        sum(r.false_matches for r in results),
        min(r.lowest_true for r in results),
        max(r.highest_different for r in results),
        sum(r.lsh_true for r in results),
        sum(r.lsh_different for r in results),
    )


def quality(args: argparse.Namespace) -> None:
    print(
        f"matching: {args.documents} originals + their copies per template, {len(fx.TEMPLATES)} templates, "
        f"k = {dm.SHINGLE_WORDS} words, {dm.NUM_PERM} hash functions, threshold {args.threshold}"
    )
    print(
        "edit      template              recall  precision  false/different pairs  lowest true  highest different  LSH recall  LSH cand. different"
    )
    for address in (False, True):
        rows = []
        for template in fx.TEMPLATES:
            result = evaluate(*pool(template, args.documents, address=address), BENCH_KEY, args.threshold)
            rows.append((template, result))
        rows.append(("all", merged([r for _, r in rows])))
        for template, r in rows:
            print(
                f"{'+address' if address else 'name/date/no.':<9} {template:<20} {r.recall:7.3f}  {r.precision:9.3f}  "
                f"{r.false_matches:>8} / {r.different_pairs:<10}  {r.lowest_true:11.3f}  {r.highest_different:17.3f}  "
                f"{r.lsh_recall:10.3f}  {r.lsh_different / r.different_pairs:18.4f}"
            )
    print(
        "LSH S-curve (32 bands x 8 rows): "
        + ", ".join(
            f"{s:.1f}: {dm.candidate_probability(s):.3f}" for s in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        )
    )


def shingle_lengths(args: argparse.Namespace) -> None:
    print(
        "shingle length: exact Jaccard on tuning seeds 0-59 (60 per template); edit = name/date/number (+address)"
    )
    print("k  true min  true p5  true median  (+address min, p5)  different max  p99.9  median")
    for k in args.shingles:
        true: list[float] = []
        with_address: list[float] = []
        different: list[float] = []
        for template in fx.TEMPLATES:
            for address, into in ((False, true), (True, with_address)):
                originals, copies = pool(template, 60, address=address, start=0)
                sets = [dm.shingles(dm.normalize_text(t), k) for t in originals + copies]
                into += [_jaccard(sets[i], sets[i + 60]) for i in range(60)]
                if not address:
                    different += [_jaccard(a, b) for a, b in itertools.combinations(sets[:60], 2)]
        true.sort(), with_address.sort(), different.sort()
        print(
            f"{k}  {true[0]:8.3f}  {true[len(true) // 20]:7.3f}  {statistics.median(true):11.3f}  "
            f"({with_address[0]:.3f}, {with_address[len(with_address) // 20]:.3f})  "
            f"{different[-1]:13.3f}  {different[int(len(different) * 0.999)]:.3f}  {statistics.median(different):.3f}"
        )


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


def timing(args: argparse.Namespace) -> None:
    originals, _ = pool("authorisation", args.pdfs or 20)
    start = time.perf_counter()
    for text in originals:
        dm.signature(text, BENCH_KEY)
    per_text = (time.perf_counter() - start) / len(originals) * 1000
    words = statistics.mean(len(dm.normalize_text(t).split()) for t in originals)
    print(f"timing: signature of one text ({words:.0f} words): {per_text:.1f} ms")
    if not args.pdfs:
        return
    same = []
    with tempfile.TemporaryDirectory() as folder:
        pdf_seconds = 0.0
        count = 0
        for template in fx.TEMPLATES:
            for i, seed in enumerate(range(HELD_OUT_SEED, HELD_OUT_SEED + args.pdfs)):
                doc = fx.document(seed, template)
                copy = fx.edited(doc, random.Random(f"edit {i}"))
                paths = [
                    fx.write_pdf(d, Path(folder) / f"{template}-{i}-{j}.pdf")
                    for j, d in enumerate((doc, copy))
                ]
                begin = time.perf_counter()
                pdf = [dm.fingerprint(path, BENCH_KEY) for path in paths]
                pdf_seconds += time.perf_counter() - begin
                count += 2
                text = dm.fingerprint_text(fx.render_text(doc), BENCH_KEY)
                same.append(
                    (
                        dm.jaccard_estimate(pdf[0].minhash, text),
                        dm.jaccard_estimate(*(f.minhash for f in pdf)),
                    )
                )
    print(
        f"timing: fingerprint of one PDF (read, extract with pypdf, SHA-256, signature): "
        f"{pdf_seconds / count * 1000:.1f} ms over {count} PDFs"
    )
    print(
        f"PDF vs text of the same document: estimate min {min(s for s, _ in same):.3f}; "
        f"PDF original vs PDF copy: min {min(c for _, c in same):.3f}, "
        f"recall at 0.8 {sum(c >= 0.8 for _, c in same) / len(same):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200, help="originals per template (default 200)")
    parser.add_argument(
        "--pdfs", type=int, default=20, help="originals per template rendered as PDF (default 20)"
    )
    parser.add_argument("--threshold", type=float, default=dm.DEFAULT_JACCARD_THRESHOLD)
    parser.add_argument(
        "--shingles", type=lambda s: [int(k) for k in s.split(",")], default=None, help="e.g. 2,3,4,5,6"
    )
    args = parser.parse_args()
    if args.shingles:
        shingle_lengths(args)
        return
    quality(args)
    timing(args)


if __name__ == "__main__":
    main()
