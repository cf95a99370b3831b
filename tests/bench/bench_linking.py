"""Benchmark the in-memory linking step against the scipy connected-components floor.

Not a test: ``python tests/bench/bench_linking.py --sizes 100000,1000000,5000000``.

Synthetic, seeded data shaped like the exchange's: most sellers are lone accounts with their own identifiers;
some belong to actors that run several accounts drawing indicators from a shared pool; a few hub indicators
(forwarder warehouses, marketplace support phones) are held by hundreds of sellers; store names and device ids
collide at random. For each size it prints, measured in the same run:

- ``link_columns``: sightings -> clusters (drop singletons, dedupe, suppression, star edges, components);
- ``floor``: ``scipy.sparse.csgraph.connected_components`` on the same seller-seller graph (the star edges
  that ``link_columns`` derives), including building the sparse matrix;
- for reference, NetworkX ``connected_components`` on those same edges (skipped above 1M sightings);
- the peak memory of ``link_columns`` on the shared sightings alone (what ``recluster`` reads), with SciPy's
  components and with the components computed elsewhere (the labels handed in, as ``recluster --engine
  spark`` does): what the driver still holds per shared sighting.

Wall time is the best of ``--repeat`` runs; peak memory is measured in a separate run with ``tracemalloc``
(numpy reports its buffers to it), and the process's max RSS is printed at the end.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from graph import linking
from graph.linking.components import _components, _link_edges
from graph.linking.prepare import _prepare
from graph.linking.rules import _rules

Columns = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def synthetic(n_sightings: int, seed: int = 7) -> Columns:
    """Columns (seller, indicator, kind) with about ``n_sightings`` rows."""
    rng = np.random.default_rng(seed)
    n_kinds = len(linking.KINDS)
    per_seller = 5
    n_sellers = n_sightings // per_seller
    seller = np.repeat(np.arange(n_sellers, dtype=np.int64), per_seller)
    kind = rng.integers(0, n_kinds, size=seller.size)
    # Indicator ids are compact, like primary keys: actor pools, then the collision vocabulary, then hubs, then
    # one fresh (unshared) id per remaining row.
    vocabulary = max(n_sightings // 20, 10)
    n_hubs = max(n_sightings // 20000, 5)

    # Actors: 20% of sellers belong to an actor with 2..8 accounts; half their rows reuse the actor's pool.
    actor_sellers = rng.random(n_sellers) < 0.2
    actor_of = np.full(n_sellers, -1, dtype=np.int64)
    n_actor_sellers = int(actor_sellers.sum())
    sizes = rng.integers(2, 9, size=max(n_actor_sellers // 4, 1))
    assignment = np.repeat(np.arange(sizes.size), sizes)[:n_actor_sellers]
    actor_of[np.flatnonzero(actor_sellers)] = np.resize(assignment, n_actor_sellers)
    row_actor = actor_of[seller]
    reuse = (row_actor >= 0) & (rng.random(seller.size) < 0.5)
    # Actor pool: 6 indicators per actor, and the pooled indicator fixes the kind.
    pool_slot = rng.integers(0, 6, size=seller.size)
    pool_size = 6 * sizes.size
    collide_base, hub_base = pool_size, pool_size + vocabulary
    indicator = np.arange(seller.size, dtype=np.int64) + hub_base + n_hubs
    indicator[reuse] = row_actor[reuse] * 6 + pool_slot[reuse]
    kind[reuse] = (indicator[reuse] * 7919) % n_kinds

    # Random collisions on weak kinds (store names, device ids): 5% of rows from a smallish vocabulary.
    collide = ~reuse & (rng.random(seller.size) < 0.05)
    indicator[collide] = collide_base + rng.integers(0, vocabulary, size=int(collide.sum()))
    kind[collide] = np.array([linking.KINDS.index("store_name"), linking.KINDS.index("device_id")])[
        indicator[collide] % 2
    ]

    # Hubs: 0.5% of rows point at one of a few hundred hub indicators (shipping addresses and phones).
    hub = ~reuse & ~collide & (rng.random(seller.size) < 0.005)
    indicator[hub] = hub_base + rng.integers(0, n_hubs, size=int(hub.sum()))
    kind[hub] = np.array([linking.KINDS.index("shipping_address"), linking.KINDS.index("phone")])[
        indicator[hub] % 2
    ]
    return seller, indicator, kind


def best_time[T](fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def peak_mib(fn: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def scipy_floor(n: int, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64]) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    return int((np.bincount(labels) >= 2).sum())


def networkx_reference(src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64]) -> int:
    import networkx as nx

    graph = nx.Graph()
    graph.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    return sum(1 for _ in nx.connected_components(graph))


def bipartite_floor(seller: npt.NDArray[np.int64], indicator: npt.NDArray[np.int64]) -> int:
    """scipy components of the whole seller-indicator graph: the cheapest computation that reads every row."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    sellers = int(seller.max()) + 1
    nodes = sellers + int(indicator.max()) + 1
    graph = coo_matrix(
        (np.ones(seller.size, dtype=np.int8), (seller, indicator + sellers)), shape=(nodes, nodes)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    return int((np.bincount(labels[:sellers]) >= 2).sum())


def measure(size: int, repeat: int, memory: bool) -> None:
    seller, indicator, kind = synthetic(size)
    platform = seller % 8  # eight platforms, so hub counts go through the per-platform cap

    def run() -> linking.Linkage[int]:
        return linking.link_columns(seller, indicator, kind, platform=platform)

    t_link, result = best_time(run, repeat)
    mem_link = peak_mib(run) if memory else float("nan")

    # Phases, and the seller-seller graph the floor runs on.
    rules = _rules(linking.KINDS, None, None)
    start = time.perf_counter()
    prep = _prepare(seller, indicator, kind, platform, rules, {}, np.zeros(0, dtype=np.int64))
    t_prepare = time.perf_counter() - start
    start = time.perf_counter()
    src, dst = _link_edges(prep)
    t_edges = time.perf_counter() - start
    start = time.perf_counter()
    _components(prep.n_sellers, src, dst)
    t_components = time.perf_counter() - start

    def floor() -> int:
        return scipy_floor(prep.n_sellers, src, dst)

    def whole_input_floor() -> int:
        return bipartite_floor(seller, indicator)

    t_floor, floor_clusters = best_time(floor, repeat)
    mem_floor = peak_mib(floor) if memory else float("nan")
    t_whole, whole_clusters = best_time(whole_input_floor, repeat)
    mem_whole = peak_mib(whole_input_floor) if memory else float("nan")
    assert floor_clusters == len(result.clusters)

    print(
        f"{size:>10} {'link_columns':<30} {t_link:>8.3f} {mem_link:>9.1f} {len(result.clusters):>9}  "
        f"prepare {t_prepare:.3f} + edges {t_edges:.3f} + components {t_components:.3f}; "
        f"{prep.row_seller.size} shared rows, {prep.n_sellers} sellers, {src.size} star edges, "
        f"{len(result.suppressed)} suppressed"
    )
    print(
        f"{size:>10} {'floor: scipy CC, same graph':<30} {t_floor:>8.3f} {mem_floor:>9.1f} {floor_clusters:>9}  "
        f"link_columns / floor = {t_link / t_floor:.1f}x"
    )
    print(
        f"{size:>10} {'floor: scipy CC, all rows':<30} {t_whole:>8.3f} {mem_whole:>9.1f} {whole_clusters:>9}  "
        f"link_columns / floor = {t_link / t_whole:.1f}x (seller-indicator graph, no rules: reads every row)"
    )
    # The driver's share when a cluster computes the components (`recluster --engine spark`), on what recluster
    # hands the core (only sightings of indicators that >= 2 sellers hold): the same run with the labels handed
    # in, as the Spark engine's collect hands them. The columns, the rules' arrays and the star edges stay on
    # the driver. (No fresh sellers here, so there is one components pass.)
    if memory:
        shared = np.bincount(indicator)[indicator] >= 2
        s_seller, s_indicator, s_kind, s_platform = (
            seller[shared],
            indicator[shared],
            kind[shared],
            platform[shared],
        )
        s_prep = _prepare(s_seller, s_indicator, s_kind, s_platform, rules, {}, np.zeros(0, dtype=np.int64))
        labels = linking.component_labels(s_prep.n_sellers, *_link_edges(s_prep))

        def shared_run(labeller: linking.ComponentLabeller) -> Callable[[], linking.Linkage[int]]:
            return lambda: linking.link_columns(
                s_seller, s_indicator, s_kind, platform=s_platform, labeller=labeller
            )

        mem_scipy = peak_mib(shared_run(linking.component_labels))
        mem_elsewhere = peak_mib(shared_run(lambda n, src, dst: labels.copy()))
        per_row = 2**20 / int(shared.sum())
        print(
            f"{size:>10} {'link_columns, shared rows only':<30} {'':>8} {mem_scipy:>9.1f} {'':>9}  "
            f"{int(shared.sum())} shared sightings: driver peak {mem_scipy * per_row:.0f} B each with SciPy CC, "
            f"{mem_elsewhere * per_row:.0f} B with the components elsewhere ({mem_elsewhere:.1f} MiB)"
        )
    if size <= 1_000_000:
        t_nx, nx_components = best_time(lambda: networkx_reference(src, dst), 1)
        print(f"{size:>10} {'NetworkX CC, same graph':<30} {t_nx:>8.3f} {'':>9} {nx_components:>9}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    args = parser.parse_args()

    header = f"{'sightings':>10} {'step':<30} {'wall s':>8} {'peak MiB':>9} {'clusters':>9}  notes"
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args.repeat, not args.no_memory)
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {max_rss:.0f} MiB (includes the generated input columns)")


if __name__ == "__main__":
    main()
