"""Serializers of the partner API. Fields are listed explicitly; server-controlled fields are read-only.

The submission and lookup request serializers document the payload in the OpenAPI schema; the hot
path validates with `exchange.ingest.parse_submission` (same rules, without per-item serializer cost).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from exchange.contract import (
    APPEAL_NOTE_MAX_LENGTH,
    APPEAL_OUTCOMES,
    DOCUMENT_KIND,
    FUZZY_WIRE_KINDS,
    IMAGE_KIND,
    IMAGE_MIN_QUALITY,
    MAX_APPEAL_DOCUMENTS,
    MAX_IMAGE_CROPS,
    OPINION_KINDS,
    OPINION_NOTE_MAX_LENGTH,
    SELLER_REF_RE,
    SELLER_REF_RULE,
    TRANSPORT_HASH_RE,
    is_seller_ref,
)
from exchange.documents import MINHASH_HEX_LENGTH, NUM_PERM
from exchange.fuzzy import ENCODING_HEX_CHARS, FILTER_BITS, MAX_BITS_SET, MIN_BITS_SET
from exchange.ingest import hash_problem
from exchange.models import Appeal, Seller
from exchange.normalization import KINDS, LINK_KINDS, REASONS, STATUSES
from exchange.timestamps import (
    CLOCK_SKEW,
    EARLIEST,
    PARTNER_TIMESTAMP_PATTERN,
    PartnerTimestampError,
    parse_partner_timestamp,
)


class IndicatorInSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=KINDS)
    hash = serializers.RegexField(
        TRANSPORT_HASH_RE,
        help_text="SHA-256 of the normalised value (the hashing spec, /api/v1/hashing-spec/), lowercase hex.",
    )


class ImageIndicatorInSerializer(serializers.Serializer):
    """A reused product photo, as its PDQ hash computed on the partner's side (never the photo)."""

    kind = serializers.ChoiceField(choices=[IMAGE_KIND])
    hash = serializers.RegexField(
        TRANSPORT_HASH_RE,
        help_text="The full photo's 256-bit PDQ hash, 64 lowercase hex characters (not keyed; see the "
        "hashing spec's 'Perceptual image hashes').",
    )
    quality = serializers.IntegerField(
        min_value=IMAGE_MIN_QUALITY,
        max_value=100,
        help_text=f"PDQ's quality score; hashes below {IMAGE_MIN_QUALITY} (flat images) are refused.",
    )
    crops = serializers.ListField(
        child=serializers.RegexField(f"^{TRANSPORT_HASH_RE.pattern}$"),
        max_length=MAX_IMAGE_CROPS,
        required=False,
        help_text="The PDQ hashes of the photo's sub-crop variants (exchange.perceptual.pdq_variants), so that "
        "cropped copies match.",
    )


class SellerReportSerializer(serializers.Serializer):
    seller_ref = serializers.RegexField(
        SELLER_REF_RE, help_text=f"Your opaque seller reference: {SELLER_REF_RULE}."
    )
    status = serializers.ChoiceField(choices=STATUSES)
    reasons = serializers.ListField(child=serializers.ChoiceField(choices=REASONS), min_length=1)
    reported_at = serializers.DateTimeField(
        help_text="ISO-8601 with a timezone (offset within +-14:00), from 2000-01-01 up to now."
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # Built per instance: the limit is the live setting, not the value at import time.
        fields = super().get_fields()
        fields["indicators"] = indicator_list(settings.EXCHANGE_MAX_SELLER_INDICATORS)
        return fields


class DocumentIndicatorInSerializer(serializers.Serializer):
    """A document (a letter, an invoice), as the SHA-256 of its file and the keyed MinHash of its text computed
    on the partner's side with the consortium key (never the file or its text)."""

    kind = serializers.ChoiceField(choices=[DOCUMENT_KIND])
    hash = serializers.RegexField(
        TRANSPORT_HASH_RE,
        help_text="SHA-256 of the file's bytes, 64 lowercase hex characters (keyed on the server).",
    )
    minhash = serializers.RegexField(
        f"^[0-9a-f]{{{MINHASH_HEX_LENGTH}}}$",
        help_text=f"The keyed MinHash of the document's normalised text: {NUM_PERM} 32-bit values as "
        f"{MINHASH_HEX_LENGTH} lowercase hex characters (the hashing spec's 'Document fingerprints').",
    )


class FuzzyIndicatorInSerializer(serializers.Serializer):
    """A name or an address as typed (person_name, business_name, or the fuzzy variant of an address), as its
    hardened keyed Bloom-filter encoding computed on the partner's side with the consortium key (never the
    value)."""

    kind = serializers.ChoiceField(choices=FUZZY_WIRE_KINDS)
    encoding = serializers.RegexField(
        f"^[0-9a-f]{{{ENCODING_HEX_CHARS}}}$",
        help_text=f"The keyed Bloom-filter encoding (exchange.fuzzy.encode): {FILTER_BITS} bits as "
        f"{ENCODING_HEX_CHARS} lowercase hex characters (the hashing spec's 'Fuzzy encodings'), with between "
        f"{MIN_BITS_SET} and {MAX_BITS_SET} bits set.",
    )


def indicator_list(limit: int) -> serializers.Field:
    """A seller's (or a lookup's) indicators: exact ones (kind and transport hash) and photos (kind `image`),
    one list (a schema annotation: ingest and the lookup view validate by hand)."""
    return PolymorphicProxySerializer(
        component_name="AnyIndicatorIn",
        serializers=[
            IndicatorInSerializer,
            ImageIndicatorInSerializer,
            DocumentIndicatorInSerializer,
            FuzzyIndicatorInSerializer,
        ],
        resource_type_field_name=None,
        many=True,
        min_length=1,
        max_length=limit,
    )


class SubmissionSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["sellers"] = SellerReportSerializer(  # type: ignore[call-arg]
            many=True, min_length=1, max_length=settings.EXCHANGE_MAX_BATCH_SELLERS
        )
        return fields


class SubmissionResponseSerializer(serializers.Serializer):
    submission = serializers.CharField(
        help_text="Opaque reference of the stored batch, e.g. sub_9f86d081884c7d65."
    )
    sellers = serializers.IntegerField()
    sellers_created = serializers.IntegerField()
    indicators = serializers.IntegerField()
    sightings_created = serializers.IntegerField()


class ClusterSummarySerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Opaque cluster reference.")
    size = serializers.IntegerField()
    platforms = serializers.IntegerField(help_text="Number of platforms spanned.")
    cross_platform = serializers.BooleanField()
    risk = serializers.IntegerField()
    kinds = serializers.ListField(
        child=serializers.CharField(), help_text="Indicator kinds linking the cluster."
    )


class OwnMemberSerializer(serializers.Serializer):
    seller_ref = serializers.CharField()
    status = serializers.CharField()
    reported_at = serializers.DateTimeField()


class OtherPlatformSerializer(serializers.Serializer):
    platform = serializers.CharField(
        help_text="A label; the platform's name only if the consortium reveals it."
    )
    accounts = serializers.IntegerField()


class ClusterEventOutSerializer(serializers.Serializer):
    kind = serializers.CharField()
    at = serializers.DateTimeField()
    members_before = serializers.IntegerField()
    members_after = serializers.IntegerField()


OPINIONS_HELP = "; ".join(f"`{kind}`: {meaning}" for kind, meaning in OPINION_KINDS.items())


class OpinionOutSerializer(serializers.Serializer):
    """One of your own opinions, as recorded."""

    id = serializers.IntegerField(
        help_text="The opinion's number (yours to quote to the exchange's analysts)."
    )
    opinion = serializers.ChoiceField(choices=list(OPINION_KINDS), help_text=OPINIONS_HELP)
    seller_ref = serializers.CharField(allow_null=True, help_text="Your seller it is about, or null.")
    note = serializers.CharField(allow_blank=True)
    acted_at = serializers.DateTimeField(allow_null=True, help_text="`actioned`: when you took action.")
    created_at = serializers.DateTimeField()
    review = serializers.ChoiceField(
        choices=["pending", "accepted", "rejected"],
        allow_null=True,
        help_text="`false_positive`: the exchange analysts' review (pending: your seller is detached from the "
        "cluster for you until they decide; accepted: it stays detached; rejected: it is shown again). Null "
        "for the other opinions.",
    )


class OpinionCountsSerializer(serializers.Serializer):
    """How many platforms (you included) gave each opinion on the cluster; never which."""

    seen_too = serializers.IntegerField()
    false_positive = serializers.IntegerField()
    disputed = serializers.IntegerField()
    actioned = serializers.IntegerField()


class ClusterDetailSerializer(ClusterSummarySerializer):
    your_sellers = OwnMemberSerializer(many=True)
    other_platforms = OtherPlatformSerializer(many=True)
    events = ClusterEventOutSerializer(many=True)
    first_seen = serializers.DateTimeField()
    changed_at = serializers.DateTimeField()
    opinions = OpinionCountsSerializer(
        help_text="How many platforms gave each opinion on this cluster (you included), never which."
    )
    your_opinions = OpinionOutSerializer(
        many=True, help_text="The opinions your platform gave, newest first."
    )


class SightingOutSerializer(serializers.Serializer):
    kind = serializers.CharField(source="indicator.kind")
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()


class SellerSerializer(serializers.ModelSerializer):
    reasons = serializers.ListField(child=serializers.CharField(), read_only=True)
    retracted = serializers.BooleanField(source="is_retracted", read_only=True)
    cluster = serializers.SerializerMethodField()

    class Meta:
        model = Seller
        fields = (
            "seller_ref",
            "status",
            "reasons",
            "first_reported_at",
            "reported_at",
            "expires_at",
            "retracted",
            "retracted_at",
            "retraction_reason",
            "cluster",
        )
        read_only_fields = fields

    def get_cluster(self, seller: Seller) -> dict[str, Any] | None:
        summaries = self.context.get("cluster_summaries") or {}
        return summaries.get(seller.pk)


class AppealSummarySerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=APPEAL_OUTCOMES)
    needs_attention = serializers.BooleanField(
        help_text="A document of the appeal matches one another platform reported as falsified."
    )
    updated_at = serializers.DateTimeField()


class SellerDetailSerializer(SellerSerializer):
    indicators = SightingOutSerializer(source="sightings", many=True, read_only=True)
    appeal = serializers.SerializerMethodField()

    class Meta(SellerSerializer.Meta):
        fields = (*SellerSerializer.Meta.fields, "indicators", "appeal")  # type: ignore[assignment]
        read_only_fields = fields  # type: ignore[assignment]

    @extend_schema_field(AppealSummarySerializer(allow_null=True))
    def get_appeal(self, seller: Seller) -> dict[str, Any] | None:
        """The seller's appeal as you recorded it (POST .../appeals/), or null."""
        appeal = getattr(seller, "appeal", None)  # None when the reverse one-to-one has no row
        return AppealSummarySerializer(appeal).data if appeal is not None else None


class TextField(serializers.CharField):
    """A JSON string, never another type coerced to one: DRF's CharField stores `0` as "0" and `true` as
    "True". Blank after trimming is refused (the schema says so with a pattern)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


NOT_BLANK = r"\S"  # at least one non-space character: what `allow_blank=False` with trimming accepts


class ClosedSerializer(serializers.Serializer):
    """A request body that refuses fields it does not know, naming them (as submissions and lookups do),
    instead of silently dropping them: a misspelt field is a client bug the partner should hear about."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            known = ", ".join(f"'{name}'" for name in self.fields)
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"unknown field; the body has only {known}"] for key in unknown}
                )
        return super().to_internal_value(data)


class RetractSerializer(ClosedSerializer):
    """Why a report is withdrawn; nothing else may be sent."""

    reason = TextField(
        max_length=1000,
        help_text="Why the report is withdrawn (e.g. appeal upheld); not blank.",
    )


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean, never a string or number read as one (DRF's BooleanField takes "yes" and 1)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class TransportHashField(serializers.RegexField):
    """64 lowercase hex characters. A refusal says what is wrong without echoing the value (it may be a raw
    identifier or a file name), as submissions and lookups do."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(TRANSPORT_HASH_RE, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        problem = hash_problem(data)
        if problem:
            raise serializers.ValidationError(problem)
        return str(data)


class AppealDocumentSerializer(ClosedSerializer):
    """One document of the appeal: the SHA-256 of its file, and whether you found it falsified."""

    sha256 = TransportHashField(
        help_text="SHA-256 of the document file as it was submitted (its bytes, not normalised), lowercase hex. "
        "The exchange keys it before storing it, like every identifier."
    )
    falsified = StrictBooleanField(
        required=False,
        help_text="You found this document falsified. Omitted: unchanged (false for a new document). Once the "
        "appeal is rejected, other platforms attaching the same document are told it was reported falsified "
        "(how many platforms, never which).",
    )


class AppealSerializer(ClosedSerializer):
    """A seller's appeal: its outcome, and optionally the fingerprints of its documents and a note."""

    outcome = serializers.ChoiceField(
        choices=APPEAL_OUTCOMES,
        help_text="pending (under review), upheld (the ban is lifted: the seller's report is retracted at once) "
        "or rejected. A later request updates it; an upheld appeal stays upheld while the report is retracted.",
    )
    documents = AppealDocumentSerializer(  # type: ignore[call-arg]
        many=True,
        required=False,
        allow_empty=False,
        max_length=MAX_APPEAL_DOCUMENTS,
        help_text="Added to the appeal's documents (a document sent again is not added twice). Each one is "
        "checked against the documents other platforms reported falsified and counts against the key's daily "
        "lookup quota like a looked-up indicator; attaching documents needs the 'lookup' scope too.",
    )
    note = TextField(
        required=False,
        allow_blank=True,
        max_length=APPEAL_NOTE_MAX_LENGTH,
        help_text="Your note (never shown to other platforms). Omitted: unchanged; blank: removed.",
    )

    def validate_outcome(self, value: Any) -> str:
        if not isinstance(value, str):  # ChoiceField matches str(value): no number or boolean passes anyway
            raise serializers.ValidationError("must be a string")
        return value


class DocumentCheckSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the document in the request, from 0.")
    falsified_elsewhere = serializers.BooleanField(
        help_text="Another platform reported this document falsified (on an appeal it rejected, of a seller it "
        "still reports)."
    )
    other_platforms = serializers.IntegerField(help_text="How many other platforms did; never which.")


class AppealResponseSerializer(serializers.Serializer):
    seller_ref = serializers.CharField()
    outcome = serializers.ChoiceField(choices=APPEAL_OUTCOMES)
    note = serializers.CharField(allow_blank=True)
    documents = serializers.IntegerField(help_text="Documents attached to the appeal in all.")
    falsified_documents = serializers.IntegerField(help_text="Of which you found falsified.")
    document_checks = DocumentCheckSerializer(
        many=True, help_text="One per document of this request, in its order."
    )
    needs_attention = serializers.BooleanField(
        help_text="A document of the appeal matches one another platform reported as falsified (now, or "
        "since it was attached)."
    )
    attention_since = serializers.DateTimeField(allow_null=True)
    retracted = serializers.BooleanField(
        help_text="The seller's report is retracted (e.g. the appeal was upheld)."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(
        allow_null=True, help_text="When the appeal was last upheld or rejected; null while pending."
    )


def appeal_answer(appeal: Appeal, checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to an appeal request, as AppealResponseSerializer renders it."""
    documents = list(appeal.documents.values_list("falsified", flat=True))
    answer = {
        "seller_ref": appeal.seller.seller_ref,
        "outcome": appeal.outcome,
        "note": appeal.note,
        "documents": len(documents),
        "falsified_documents": sum(documents),
        "document_checks": checks,
        "needs_attention": appeal.needs_attention,
        "attention_since": appeal.attention_since,
        "retracted": appeal.seller.is_retracted,
        "created_at": appeal.created_at,
        "updated_at": appeal.updated_at,
        "decided_at": appeal.decided_at,
    }
    return AppealResponseSerializer(answer).data


class PartnerTimestampField(serializers.DateTimeField):
    """A date-time a partner sends, bounded like every partner timestamp (exchange.timestamps), in UTC."""

    def to_internal_value(self, value: Any) -> Any:
        try:
            return parse_partner_timestamp(value, timezone.now())
        except PartnerTimestampError as exc:
            raise serializers.ValidationError(str(exc)) from None


ACTED_AT_RULE = (
    "With `actioned` only, and required with it: when you took enforcement, not before the first signal you "
    "had about this actor (your lookup that showed the cluster or your report of the seller, whichever came "
    "first)."
)
NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot store a NUL in text; DRF refuses it too


class OpinionSerializer(ClosedSerializer):
    """Your opinion on a cluster one of your sellers is in, or that one of your lookups showed you."""

    opinion = serializers.ChoiceField(choices=list(OPINION_KINDS), help_text=OPINIONS_HELP)
    seller_ref = serializers.RegexField(
        SELLER_REF_RE,
        required=False,
        help_text="One of your sellers in this cluster (required with `false_positive`: which of your sellers "
        "is not this actor). Unknown to your platform: 404; yours but not in this cluster: 400.",
    )
    note = TextField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=OPINION_NOTE_MAX_LENGTH,
        help_text="Free text for your analysts and the exchange's; never shown to another platform. Put no "
        "identifiers in it (no other platform's references, no raw emails, phones or account numbers).",
    )
    acted_at = PartnerTimestampField(required=False, help_text=ACTED_AT_RULE)

    def validate_seller_ref(self, value: str) -> str:
        if not is_seller_ref(value):  # the RegexField searches; a reference matches whole
            raise serializers.ValidationError(f"must be {SELLER_REF_RULE}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs["opinion"]
        if kind == "actioned" and "acted_at" not in attrs:
            raise serializers.ValidationError(
                {"acted_at": ["required with `actioned`: when you took action"]}
            )
        if kind != "actioned" and "acted_at" in attrs:
            raise serializers.ValidationError({"acted_at": ["only with `actioned`"]})
        if kind == "false_positive" and "seller_ref" not in attrs:
            raise serializers.ValidationError(
                {"seller_ref": ["required with `false_positive`: which of your sellers is not this actor"]}
            )
        return attrs


class LookupSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["indicators"] = indicator_list(settings.EXCHANGE_MAX_LOOKUP_INDICATORS)
        return fields


class LookupResultSerializer(serializers.Serializer):
    """One looked-up indicator's answer. "Holders" are other platforms' live sellers (neither retracted nor
    expired) that hold the indicator; the caller's own sellers never count."""

    index = serializers.IntegerField(help_text="Position of the indicator in the request, from 0.")
    kind = serializers.ChoiceField(choices=LINK_KINDS, help_text="The looked-up indicator's kind, as sent.")
    match = serializers.BooleanField(help_text="Reported sellers on other platforms share this indicator.")
    other_platforms = serializers.IntegerField(help_text="How many other platforms have a holder.")
    reported_sellers = serializers.IntegerField(help_text="How many holders there are, on all of them.")
    cluster = serializers.CharField(
        allow_null=True,
        help_text="Opaque reference of the riskiest actor cluster a holder belongs to; null if none does.",
    )
    risk = serializers.IntegerField(allow_null=True, help_text="That cluster's risk score; null without one.")
    matched_kinds = serializers.ListField(
        child=serializers.CharField(),
        help_text=(
            "The kinds of this request's indicators that matched and hit `cluster` (sorted, distinct): the "
            "kinds this request and the cluster share. Without a cluster, this indicator's kind if it "
            "matched; empty if it did not."
        ),
    )
    cluster_kinds = serializers.ListField(
        child=serializers.CharField(),
        help_text="The indicator kinds linking `cluster`'s members (its own, not this request's); empty "
        "without a cluster.",
    )
    reported_falsified = serializers.IntegerField(
        allow_null=True,
        help_text="Documents (kind `document`): how many of the holders were reported with the reason "
        "`falsified_documents`, to screen an appeal's document before reinstating a seller; null for other "
        "kinds.",
    )


class LookupResponseSerializer(serializers.Serializer):
    results = LookupResultSerializer(many=True)


def request_bodies_are_closed(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the API refuses unknown fields in every request body
    (exchange.parsers), so the schema says `additionalProperties: false` on request components; and the
    strings that may not be blank say so with a pattern."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
            # A JSON-schema pattern matches anywhere in the string; the server's RegexFields match it whole.
            for prop in component.get("properties", {}).values():
                if "pattern" in prop and not prop["pattern"].startswith("^"):
                    prop["pattern"] = f"^(?:{prop['pattern']})$"
        if name == "RetractRequest":  # not blank, and no NUL (PostgreSQL cannot store one; DRF refuses it)
            component["properties"]["reason"]["pattern"] = r"^[^\x00]*[^\s\x00][^\x00]*$"
        if name == "OpinionRequest":
            component["properties"]["note"]["pattern"] = NO_NUL
            component["description"] = OPINION_RULE
    # The list limits are the live settings (the serializers read them too, per request).
    schemas = result.get("components", {}).get("schemas", {})
    for component, field, most in (
        ("SubmissionRequest", "sellers", settings.EXCHANGE_MAX_BATCH_SELLERS),
        ("SellerReportRequest", "indicators", settings.EXCHANGE_MAX_SELLER_INDICATORS),
        ("LookupRequest", "indicators", settings.EXCHANGE_MAX_LOOKUP_INDICATORS),
        ("AppealRequest", "documents", MAX_APPEAL_DOCUMENTS),
    ):
        if component in schemas:
            schemas[component]["properties"][field].update(minItems=1, maxItems=most)
    # One seller's indicators are distinct (ingest refuses a repeated kind and hash).
    if "SellerReportRequest" in schemas:
        schemas["SellerReportRequest"]["properties"]["indicators"].update(
            {"uniqueItems": True, "x-unique-by": ["kind", "hash"], "description": DISTINCT_INDICATORS_RULE}
        )
    # A fuzzy encoding's bits set (exchange.fuzzy.MIN_BITS_SET..MAX_BITS_SET): JSON Schema cannot count bits,
    # so an extension and the description say it.
    if "FuzzyIndicatorInRequest" in schemas:
        schemas["FuzzyIndicatorInRequest"]["properties"]["encoding"]["x-bits-set"] = {
            "minimum": MIN_BITS_SET,
            "maximum": MAX_BITS_SET,
        }
    # One report per seller in a batch (ingest refuses a repeated seller_ref). JSON Schema cannot say "unique
    # by one property", so an extension and the description say it.
    if "SubmissionRequest" in schemas:
        schemas["SubmissionRequest"]["properties"]["sellers"].update(
            {"x-unique-by": "seller_ref", "description": DISTINCT_SELLERS_RULE}
        )
    for parameter_or_property in request_side_values(result):
        if parameter_or_property.get("schema", parameter_or_property).get("format") == "date-time":
            document_partner_timestamp(parameter_or_property)
    if "OpinionRequest" in schemas:  # the field's own rule before the rule of every partner timestamp
        acted_at = schemas["OpinionRequest"]["properties"]["acted_at"]
        acted_at["description"] = f"{ACTED_AT_RULE} {acted_at['description']}"
    for parameter in result.get("paths", {}).get("/api/v1/sellers/", {}).get("get", {}).get("parameters", []):
        if parameter["name"] == "cursor":
            parameter["description"] = CURSOR_RULE
    add_links(result)
    return result


OPINION_RULE = (
    "Your opinion on a cluster one of your sellers is in, or that one of your lookups showed you (any other "
    "cluster is a 404). `acted_at` goes with `actioned` only and is required with it; `seller_ref` is required "
    "with `false_positive`. Anything else is a 400 naming the field. A `false_positive` detaches your seller "
    "from the cluster for you at once and waits for the exchange analysts' review; giving it again while it "
    "stands answers 200 with the standing one."
)
DISTINCT_INDICATORS_RULE = (
    "A seller's indicators are distinct by kind and hash: the same photo (kind `image`, the same full hash) "
    "twice is refused like any repeated indicator, whatever its quality or crops."
)
DISTINCT_SELLERS_RULE = (
    "One report per seller: the seller_refs within one batch are distinct (a repeated one is a 400 naming "
    "the item)."
)
CURSOR_RULE = (
    "Only a value taken from a page's `next` or `previous` link, as it is: cursors are encrypted and "
    "authenticated, so any other value is a 400."
)
PARTNER_TIMESTAMP_RULE = (
    f"An RFC 3339 date-time with `Z` or a UTC offset within +-14:00, at or after "
    f"{EARLIEST:%Y-%m-%dT%H:%M:%SZ} and not in the future (the server allows "
    f"{CLOCK_SKEW.seconds // 60} minutes of clock skew); anything else is a 400 naming the field."
)


def document_partner_timestamp(value: dict[str, Any]) -> None:
    """A date-time a partner sends (a body property or a query parameter): the pattern says the syntax; the
    bounds in time, which JSON Schema cannot state (the upper one moves), are an extension and the
    description."""
    schema = value.get("schema", value)
    schema["pattern"] = PARTNER_TIMESTAMP_PATTERN
    schema["x-not-before"] = f"{EARLIEST:%Y-%m-%dT%H:%M:%SZ}"
    schema["x-not-after"] = "now"
    value["description"] = PARTNER_TIMESTAMP_RULE


def request_side_values(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The request components' properties and every operation's parameters: what a partner sends."""
    values: list[dict[str, Any]] = []
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            values.extend(component.get("properties", {}).values())
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            values.extend(operation.get("parameters", []))
    return values


def link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


# OpenAPI links: which value of one answer addresses which next operation (clients and schemathesis's
# stateful phase follow them). (path, method, status) -> name -> link.
LINKS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    ("/api/v1/submissions/", "post", "201"): {
        "GetReportedSeller": link("sellers_retrieve", seller_ref="$request.body#/sellers/0/seller_ref"),
        "RetractReportedSeller": link(
            "sellers_retract_create", seller_ref="$request.body#/sellers/0/seller_ref"
        ),
        "AppealReportedSeller": link(
            "sellers_appeals_create", seller_ref="$request.body#/sellers/0/seller_ref"
        ),
    },
    ("/api/v1/sellers/", "get", "200"): {
        "GetListedSeller": link("sellers_retrieve", seller_ref="$response.body#/results/0/seller_ref"),
        "GetListedSellersCluster": link("clusters_retrieve", ref="$response.body#/results/0/cluster/id"),
    },
    ("/api/v1/sellers/{seller_ref}/", "get", "200"): {
        "RetractSeller": link("sellers_retract_create", seller_ref="$response.body#/seller_ref"),
        "GetSellersCluster": link("clusters_retrieve", ref="$response.body#/cluster/id"),
        "RecordSellersAppeal": link("sellers_appeals_create", seller_ref="$response.body#/seller_ref"),
    },
    ("/api/v1/sellers/{seller_ref}/retract/", "post", "200"): {
        "GetRetractedSeller": link("sellers_retrieve", seller_ref="$response.body#/seller_ref"),
    },
    ("/api/v1/sellers/{seller_ref}/appeals/", "post", "201"): {
        "GetAppealedSeller": link("sellers_retrieve", seller_ref="$response.body#/seller_ref"),
    },
    ("/api/v1/sellers/{seller_ref}/appeals/", "post", "200"): {
        "GetAppealedSellerAgain": link("sellers_retrieve", seller_ref="$response.body#/seller_ref"),
    },
    ("/api/v1/lookups/", "post", "200"): {
        "GetMatchedCluster": link("clusters_retrieve", ref="$response.body#/results/0/cluster"),
        "GiveOpinionOnMatch": link("clusters_opinions_create", ref="$response.body#/results/0/cluster"),
    },
    ("/api/v1/clusters/", "get", "200"): {
        "GetListedCluster": link("clusters_retrieve", ref="$response.body#/results/0/id"),
        "GiveOpinionOnListedCluster": link("clusters_opinions_create", ref="$response.body#/results/0/id"),
    },
    ("/api/v1/clusters/{ref}/", "get", "200"): {
        "GiveOpinionOnCluster": link("clusters_opinions_create", ref="$response.body#/id"),
    },
}


def add_links(result: dict[str, Any]) -> None:
    paths = result.get("paths", {})
    for (path, method, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is not None:
            response["links"] = links
