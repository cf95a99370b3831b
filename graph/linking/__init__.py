"""Link reported sellers into actor clusters (pure: no Django, plain data in, plain data out).

Rules (PRODUCT.md, "Linking"):

- An indicator is the pair (kind, token). Two sellers are *linked* when they share at least one strong indicator,
  or at least two *different* weak ones that are two pieces of evidence: an exact address and a fuzzy address
  group are one, since a partner sends each address both ways, and so are a person's name and a business name
  (kinds of one family, ``exchange.contract.FUZZY_FAMILY``; :func:`~graph.linking.rules.weak_indicators_link`,
  the one statement of this rule). Clusters are the connected components of that link graph with at least two
  members; a seller that links to nobody is in no cluster.
- Only active sellers link. The caller either passes active sightings only, or passes every sighting plus the
  ``inactive`` seller ids (retracted or expired), which are then ignored for linking. The incremental
  :func:`relink` needs the second form so that it can see what a newly inactive seller used to hold.
- An indicator held by a single seller cannot link anyone and is dropped before any graph is built.
- Held merges: one platform's *fresh* sellers (the caller decides: recently reported and not covered by an
  approved merge, or in a rejected one) must not glue other platforms' clusters alone. For each link
  component and each platform ``P`` with fresh sellers in it, the component without ``P``'s fresh sellers
  falls into parts; if two or more parts of >= 2 sellers contain no seller of ``P`` (so only ``P``'s fresh
  sellers join them), those fresh sellers are held: they link nobody, the parts stay separate clusters,
  and the result lists a :class:`HeldMerge`. Each platform is judged on the whole component (another
  platform's sellers, held or not, making the same link corroborate it), so the decision is a function of
  the component alone, which keeps incremental runs equal to full ones.
- Hub suppression: an indicator whose *counted* holders exceed its kind's threshold (``counted > threshold``;
  exactly ``threshold`` still link) does not link; it is reported as context on the clusters of the sellers
  that hold it. Each platform's contribution to the count is capped (:class:`HubRule`): counted =
  sum over platforms of ``min(active holders on that platform, ceil(threshold / platform_divisor))``, so one
  platform alone (a hostile or compromised member inventing holders) can never push an indicator over its
  threshold and unlink other platforms' clusters; only an indicator common across several platforms is
  suppressed. A platform whose own active holders exceed the threshold (its support phone, typed in by its
  sellers) is reporting a hub of its own: *its* holders do not link through the indicator, which leaves
  every other platform's links through it untouched. Analyst overrides per indicator: ``"common"``
  suppresses it whatever its count, ``"include"`` lets it link whatever its count.

How (performance): the link graph is never materialised pairwise. Everything is column-oriented numpy over
integer-coded indicators; for connectivity it suffices that

- the holders of a strong indicator are joined by a *star* (first holder to each other holder), and
- sellers holding both weak indicators ``w1`` and ``w2`` (a pair that counts) are pairwise linked, so a star over
  the holders of each counting weak *pair* ``(w1, w2)`` suffices. Pairs are enumerated per seller (``C(k, 2)`` for a seller with ``k``
  shared weak indicators), so the cost does not depend on how popular an "include"-overridden weak indicator is.

Components of the star edges come from SciPy's compiled ``connected_components`` over a sparse adjacency
matrix, then each component is labelled by its smallest seller code with one numpy ``minimum.at`` (see
:func:`~graph.linking.components.component_labels`): NetworkX's per-edge Python cost alone was 40-80x the SciPy
floor at 5M sightings. The labeller is injectable (``link_columns(..., labeller=...)``,
:data:`ComponentLabeller`): when the link graph outgrows one machine,
:class:`~graph.linking.spark.SparkComponents` labels the same edges on Spark (large-star/small-star) and
everything after the labels stays as it is. NetworkX is used where graphs are per cluster and small
(:mod:`graph.evidence`). :func:`link_columns` is the fast entry point for the database side
(``seller``/``indicator`` ids and kind codes as parallel arrays); :func:`link` is the convenience wrapper over
:class:`Sighting` tuples.

Modules: :mod:`~graph.linking.records` (types and result records), :mod:`~graph.linking.rules` (strength,
the weak rule, thresholds, :class:`HubRule`), :mod:`~graph.linking.arrays` (integer-column helpers),
:mod:`~graph.linking.prepare` (coded sightings, overrides and hub suppression applied),
:mod:`~graph.linking.components` (star edges, SciPy components), :mod:`~graph.linking.spark` (the same
components on Spark, optional), :mod:`~graph.linking.held` (held merges),
:mod:`~graph.linking.full` (:func:`link_columns`), :mod:`~graph.linking.incremental` (:func:`relink_columns`)
and :mod:`~graph.linking.tuples` (:func:`link`, :func:`relink` over :class:`Sighting` tuples). This package
re-exports their public names.
"""

# One list of kinds for the whole exchange: the hashing spec's (pure, no Django). The linking core knows every
# kind that links, exact and similarity (LINK_KINDS); a kind's code is its index there.
from exchange.normalization import LINK_KINDS as KINDS
from exchange.normalization import STRONG_KINDS, WEAK_KINDS
from graph.linking.arrays import (
    ArrayLike,
    BoolArray,
    IntArray,
    distinct,
    distinct_first,
    distinct_inverse,
    isin,
)
from graph.linking.components import ComponentLabeller, component_labels
from graph.linking.full import link_columns
from graph.linking.incremental import relink_columns
from graph.linking.records import (
    Cluster,
    HeldMerge,
    IndicatorKey,
    IndicatorOverrides,
    Linkage,
    Override,
    Relinkage,
    Sighting,
    Strength,
    SuppressedIndicator,
    SuppressionReason,
    Token,
)
from graph.linking.rules import (
    DEFAULT_PLATFORM_DIVISOR,
    DEFAULT_STRENGTH,
    DEFAULT_THRESHOLDS,
    HubRule,
    family_codes,
    kind_family,
    platform_cap,
    weak_groups_link,
    weak_indicators_link,
    weak_pair_counts,
)
from graph.linking.tuples import indicator_sort_key, link, relink

__all__ = [
    "DEFAULT_PLATFORM_DIVISOR",
    "DEFAULT_STRENGTH",
    "DEFAULT_THRESHOLDS",
    "KINDS",
    "STRONG_KINDS",
    "WEAK_KINDS",
    "ArrayLike",
    "BoolArray",
    "Cluster",
    "ComponentLabeller",
    "HeldMerge",
    "HubRule",
    "IndicatorKey",
    "IndicatorOverrides",
    "IntArray",
    "Linkage",
    "Override",
    "Relinkage",
    "Sighting",
    "Strength",
    "SuppressedIndicator",
    "SuppressionReason",
    "Token",
    "component_labels",
    "distinct",
    "distinct_first",
    "distinct_inverse",
    "family_codes",
    "indicator_sort_key",
    "isin",
    "kind_family",
    "link",
    "link_columns",
    "platform_cap",
    "relink",
    "relink_columns",
    "weak_groups_link",
    "weak_indicators_link",
    "weak_pair_counts",
]
