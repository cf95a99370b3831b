"""Actor clusters as a MISP feed in MISP core format: plain data in, JSON-ready dicts out (no Django here).

A MISP feed is a directory that MISP's feed fetcher reads: `manifest.json`, {event uuid: the event's summary
(Orgc, Tag, info, date, analysis, threat_level_id, timestamp)}, and one `<uuid>.json` per event,
`{"Event": {...}}`. MISP adds an event it has not seen and replaces one whose manifest `timestamp` is newer
than its copy's, so the timestamp here is the cluster's last change (`last_change`) and every attribute
carries it too (MISP updates an attribute only when its timestamp grows).

No `hashes.csv`: MISP's "quick cache" reads it when present (the MD5 of each correlating attribute value) and
otherwise caches from the manifest and the events, which hold the same values; a file of hashes of seller
references would say nothing the events do not, and the feed keeps to one rule: no hashes leave the exchange.

What one cluster becomes, for one viewer (the exchange analysts' full view, or a partner's: graph/exports.py):

- an event whose uuid is derived from the viewer and the cluster reference (stable across exports); `info`
  summarises the cluster; `date` is when it was first seen; `threat_level_id` bands the risk score
  (RISK_BANDS); `analysis` follows the analysts' status (new: initial, investigating: ongoing, confirmed or
  dismissed: complete; a partner's view, which has no status: initial);
- event tags: the TLP (MISP's `tlp` taxonomy, TLP 2.0 names), `bad-actor-exchange:linked-by="<kind>"` per
  indicator kind that links the members and, in the full view, `bad-actor-exchange:cluster-status="<status>"`;
- attributes: the cluster reference (`threat-actor`, the only correlating one: it is unique), the risk score
  (`integer`), its size and platform count (`counter`), one `counter` per platform with its accounts (named,
  or "Platform A" ... in a partner's view unless the consortium reveals names), and one `text` attribute
  (category Attribution) per seller the viewer may see: its `seller_ref`, with the platform, status and
  report date in the comment and as attribute tags. A seller reference is unique only within its platform, so
  it does not correlate.

Never in a feed: indicator tokens, transport hashes or raw identifiers (the exchange holds none of the latter),
analyst notes or assignees, and in a partner's view another platform's seller references or (unless revealed)
names. Events keep to MISP's published JSON schema (format/2.4/schema.json): numbers as strings, no `Object`.

MISP keeps attributes that an update no longer carries: a seller that left a cluster stays in MISP's copy of
the event, while its size and per-platform counts are current.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from graph.stix import DEFAULT_TLP, PRODUCER_NAME, TLP_MARKING_IDS, ClusterData

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "bad-actor-exchange:misp")
ORGANISATION = {"name": PRODUCER_NAME, "uuid": str(uuid.uuid5(NAMESPACE, "organisation"))}
TAG_NAMESPACE = "bad-actor-exchange"
TAG_COLOUR = "#2f4f6f"
# MISP's `tlp` taxonomy (misp-taxonomies, tlp/machinetag.json): its TLP 2.0 values and their colours.
TLP_COLOURS = {
    "clear": "#ffffff",
    "green": "#33FF00",
    "amber": "#FFC000",
    "amber+strict": "#FFC000",
    "red": "#FF2B2B",
}
assert set(TLP_COLOURS) == set(TLP_MARKING_IDS)  # the TLPs a platform may choose (graph/stix.py)

# threat_level_id: 1 high, 2 medium, 3 low (4 undefined is never used: every cluster has a risk score).
RISK_BANDS = ((70, 1), (40, 2), (0, 3))
# analysis: 0 initial, 1 ongoing, 2 complete.
ANALYSIS = {"new": 0, "investigating": 1, "confirmed": 2, "dismissed": 2}
INFO_MAX = 256  # MISP core format: info SHOULD NOT be longer


def event_uuid(ref: str, viewer: str = "exchange") -> str:
    """The event's uuid: one per cluster and viewer, the same in every export (a partner's view is another
    event than the full one, so a MISP holding both keeps both)."""
    return str(uuid.uuid5(NAMESPACE, f"event\x1f{viewer}\x1f{ref}"))


def _attribute_uuid(event: str, *key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(("attribute", event, *key))))


def last_change(cluster: ClusterData) -> datetime:
    """When anything the event shows last changed, as far as the exchange records it: membership, the
    analysts' status, a member's (re-)report. The risk score's daily drift (its recency part) is not a change:
    it is current in each export, and MISP takes it with the next change."""
    moments = [cluster.changed_at, *(seller.reported_at for seller in cluster.sellers)]
    if cluster.last_event_at is not None:
        moments.append(cluster.last_event_at)
    return max(moments)


def threat_level(risk: int) -> int:
    return next(level for floor, level in RISK_BANDS if risk >= floor)


def _epoch(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def _tag_value(text: str) -> str:
    """A machine tag's value is quoted: a double quote inside would end it early."""
    return text.replace('"', "'")


def _tag(predicate: str, value: str) -> dict[str, Any]:
    return {"name": f'{TAG_NAMESPACE}:{predicate}="{_tag_value(value)}"', "colour": TAG_COLOUR}


def tlp_tag(tlp: str) -> dict[str, Any]:
    return {"name": f"tlp:{tlp}", "colour": TLP_COLOURS[tlp]}


def _info(cluster: ClusterData, kinds: Sequence[str]) -> str:
    linked_by = ", ".join(kinds) or "no indicator kind recorded"
    info = (
        f"Actor cluster {cluster.ref}: {cluster.size} seller accounts on {cluster.platforms} platforms, "
        f"linked by {linked_by}"
    )
    return info if len(info) <= INFO_MAX else info[: INFO_MAX - 3] + "..."


def event(cluster: ClusterData, tlp: str = DEFAULT_TLP) -> dict[str, Any]:
    """One cluster as `cluster.viewer` may see it: a MISP core format event, `{"Event": {...}}`."""
    uid = event_uuid(cluster.ref, cluster.viewer)
    stamp = _epoch(last_change(cluster))
    kinds = sorted(cluster.kinds)

    def attribute(
        key: tuple[str, ...], kind: str, category: str, value: str | int, comment: str, **extra: Any
    ) -> dict[str, Any]:
        return {
            "uuid": _attribute_uuid(uid, *key),
            "type": kind,
            "category": category,
            "value": str(value),
            "comment": comment,
            "to_ids": False,  # nothing here is an indicator of compromise to detect on
            "disable_correlation": kind != "threat-actor",
            "timestamp": stamp,
            **extra,
        }

    attributes = [
        attribute(
            ("ref",),
            "threat-actor",
            "Attribution",
            cluster.ref,
            "Actor cluster reference on the bad-actor intelligence exchange",
        ),
        attribute(("risk",), "integer", "Other", cluster.risk, "Risk score (0-100), the exchange's formula"),
        attribute(("size",), "counter", "Other", cluster.size, "Seller accounts in the cluster"),
        attribute(("platforms",), "counter", "Other", cluster.platforms, "Platforms with accounts in it"),
    ]
    for index, count in enumerate(cluster.counts):
        attribute_key = ("platform-count", str(index))
        comment = f"Seller accounts on {count.label}"
        attributes.append(attribute(attribute_key, "counter", "Other", count.accounts, comment))
    for seller in cluster.sellers:
        reported = seller.reported_at.astimezone(UTC).date().isoformat()
        attributes.append(
            attribute(
                ("seller", seller.platform_key, seller.seller_ref),
                "text",
                "Attribution",
                seller.seller_ref,
                f"Seller account on {seller.platform} ({seller.status}, reported {reported})",
                Tag=[_tag("platform", seller.platform), _tag("seller-status", seller.status)],
            )
        )

    tags = [tlp_tag(tlp), *(_tag("linked-by", kind) for kind in kinds)]
    if cluster.status:
        tags.append(_tag("cluster-status", cluster.status))
    return {
        "Event": {
            "uuid": uid,
            "info": _info(cluster, kinds),
            "date": cluster.first_seen.astimezone(UTC).date().isoformat(),
            "threat_level_id": str(threat_level(cluster.risk)),
            "analysis": str(ANALYSIS.get(cluster.status, 0)),
            "published": True,
            "timestamp": stamp,
            "publish_timestamp": stamp,
            "Orgc": dict(ORGANISATION),
            "Tag": tags,
            "Attribute": attributes,
        }
    }


def manifest_entry(misp_event: dict[str, Any]) -> dict[str, Any]:
    """The event's line in manifest.json, read from the event itself so the two cannot disagree; numbers as
    numbers, as MISP's own feed generators write them."""
    data = misp_event["Event"]
    return {
        data["uuid"]: {
            "Orgc": data["Orgc"],
            "Tag": data["Tag"],
            "info": data["info"],
            "date": data["date"],
            "analysis": int(data["analysis"]),
            "threat_level_id": int(data["threat_level_id"]),
            "timestamp": int(data["timestamp"]),
        }
    }
