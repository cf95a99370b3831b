"""Partner API v1 views. Thin and declarative; every queryset a partner can reach is scoped to the
caller's platform in `PartnerScopedMixin.get_queryset()` and nowhere else, so another platform's object
is simply absent (404)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.views.decorators.http import require_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, generics, serializers
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from accounts.authentication import Partner
from exchange import appeals, hooks, ingest, lookups, parsers, retention, routers
from exchange.contract import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENCY_KEY_RULE,
    Limits,
    is_idempotency_key,
)
from exchange.errors import Conflict
from exchange.filters import SellerFilter
from exchange.models import Seller, Sighting
from exchange.serializers import (
    AppealResponseSerializer,
    AppealSerializer,
    LookupResponseSerializer,
    LookupSerializer,
    RetractSerializer,
    SellerDetailSerializer,
    SellerSerializer,
    SubmissionResponseSerializer,
    SubmissionSerializer,
    appeal_answer,
)

ERROR = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorBody",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.JSONField(allow_null=True),
            },
        )
    },
)
COMMON_ERRORS = {401: ERROR, 403: ERROR, 429: ERROR}
REPLAYED_HEADER = "Idempotent-Replayed"


def partner_of(request: Request) -> Partner:
    partner = request.user
    if not isinstance(partner, Partner):  # the permission class makes this unreachable
        raise exceptions.NotAuthenticated()
    return partner


def read_json(request: Request) -> Any:
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise exceptions.ParseError(f"Malformed JSON: {exc}") from None
    except RecursionError:  # not a ValueError: 100,000 `[` were a 500
        raise exceptions.ParseError(f"Malformed JSON: {parsers.NESTED_TOO_DEEPLY}") from None


def raise_invalid(errors: dict[str, list[str]]) -> None:
    raise exceptions.ValidationError(errors)


@dataclass(frozen=True, slots=True)
class PartnerScope:
    """What a partner's key reaches of one model: `rows(platform_id)`; `nothing()` for the schema generator."""

    rows: Callable[[int], QuerySet[Any]]
    nothing: Callable[[], QuerySet[Any]]


# The partner API's scopes; graph/api.py adds the clusters' (`CLUSTERS`) beside its views.
OWN_SELLERS = PartnerScope(Seller.objects.of_platform, Seller.objects.none)


class PartnerScopedMixin:
    """The one place where partner-reachable querysets are scoped to the caller's platform: a view names
    its `scope` (a PartnerScope), and another platform's objects are simply not in the queryset (404)."""

    scope = OWN_SELLERS

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return self.scope.nothing()
        return self.scope.rows(partner_of(self.request).platform_id)  # type: ignore[attr-defined]


def server_limits() -> Limits:
    """The live limits (settings), as the reference client learns them from /me/."""
    return Limits(
        max_batch_sellers=settings.EXCHANGE_MAX_BATCH_SELLERS,
        max_seller_indicators=settings.EXCHANGE_MAX_SELLER_INDICATORS,
        max_lookup_indicators=settings.EXCHANGE_MAX_LOOKUP_INDICATORS,
        max_body_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
    )


HASHING_SPEC = settings.BASE_DIR / "docs" / "hashing-spec.md"


@require_safe
def hashing_spec(request: HttpRequest) -> HttpResponse:
    """The hashing spec (docs/hashing-spec.md) as Markdown, without a key: the API description links
    here, and a partner needs it to compute transport hashes before it has a working key."""
    try:
        text = HASHING_SPEC.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Http404("the hashing spec is not installed with this server") from None
    return HttpResponse(text, content_type="text/markdown; charset=utf-8")


class MeView(APIView):
    """Who am I: the calling key's platform and scopes (handy to check a key works)."""

    required_scope = "read"

    @extend_schema(
        responses={
            200: inline_serializer(
                "Me",
                {
                    "platform": serializers.CharField(),
                    "key_prefix": serializers.CharField(),
                    "scopes": serializers.ListField(child=serializers.CharField()),
                    "default_region": serializers.CharField(
                        allow_null=True,
                        help_text="The platform's ISO 3166 country code for national phone numbers and "
                        "identifiers without a country prefix; null if the operator set none. The reference "
                        "client uses it when it is given no --default-region.",
                    ),
                    "limits": inline_serializer(
                        "Limits",
                        {
                            "max_batch_sellers": serializers.IntegerField(help_text="sellers per submission"),
                            "max_seller_indicators": serializers.IntegerField(
                                help_text="indicators per seller"
                            ),
                            "max_lookup_indicators": serializers.IntegerField(
                                help_text="indicators per lookup"
                            ),
                            "max_body_bytes": serializers.IntegerField(
                                help_text="bytes of a request's JSON body (larger: 413); the reference client "
                                "splits its batches to fit"
                            ),
                        },
                    ),
                },
            ),
            **COMMON_ERRORS,
        }
    )
    def get(self, request: Request) -> Response:
        partner = partner_of(request)
        return Response(
            {
                "platform": partner.platform.slug,
                "key_prefix": partner.api_key.prefix,
                "scopes": partner.api_key.scopes,
                "default_region": partner.platform.default_region or None,
                "limits": server_limits().as_dict(),
            }
        )


class SubmissionView(APIView):
    """Report sellers with hashed indicators. The batch is validated as a whole: any bad item gives a 400
    naming the item and field, and nothing is stored. A retry with the same Idempotency-Key and body
    returns the first response again (201, the same body, plus `Idempotent-Replayed: true`) without a second
    effect; the same key with another body is refused (409)."""

    required_scope = "submit"

    @extend_schema(
        operation_id="submissions_create",
        request=SubmissionSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
                    "pattern": IDEMPOTENCY_KEY_PATTERN,
                },
                OpenApiParameter.HEADER,
                required=True,
                description=f"A unique key per batch ({IDEMPOTENCY_KEY_RULE}), reused on retries of that batch.",
            ),
            OpenApiParameter(
                REPLAYED_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[201],
                enum=["true"],
                description="Present on a replay: the batch was stored by an earlier request with this key.",
            ),
        ],
        responses={
            201: OpenApiResponse(
                SubmissionResponseSerializer,
                description="Accepted; a retry with the same Idempotency-Key and body gets this first answer "
                "again, with the header `Idempotent-Replayed: true`.",
            ),
            400: ERROR,
            409: ERROR,
            413: ERROR,
            **COMMON_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        partner = partner_of(request)
        raw_key = request.headers.get("Idempotency-Key", "")
        # Control characters are refused: PostgreSQL cannot store a NUL (that was a 500).
        if not is_idempotency_key(raw_key):
            raise_invalid({"Idempotency-Key": [f"header is required: {IDEMPOTENCY_KEY_RULE}"]})
        key = raw_key.strip()
        body = request.body
        payload = read_json(request)
        try:
            result = ingest.do_submit(partner.platform, partner.api_key, key, body, payload)
        except ingest.BatchInvalid as exc:
            raise exceptions.ValidationError(exc.errors) from None
        except ingest.IdempotencyConflict:
            raise Conflict(
                {
                    "code": "idempotency_key_reused",
                    "message": "This Idempotency-Key was already used with a different body.",
                }
            ) from None
        # Only an accepted batch leaves a row, so its first answer was a 201: a replay answers it again.
        response = Response(result.submission.response, status=201)
        if result.replayed:
            response[REPLAYED_HEADER] = "true"
        return response


def cursor_cipher() -> Fernet:
    """Authenticated encryption for pagination cursors, keyed from SECRET_KEY (a new key: old cursors 400)."""
    key = salted_hmac("exchange.views.cursor_cipher", "cursor", algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(key))


class SellerPagination(CursorPagination):
    """Newest first, by the global seller id (which the (platform, -id) index serves). DRF's cursors are
    base64 of `p=<that id>`, and the difference between two of them tells a partner how many sellers all
    platforms reported in between: ours are encrypted and authenticated (Fernet), so they carry nothing a
    partner can read, and a forged or altered one is a 400 rather than a database error."""

    ordering = "-id"
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"

    def get_page_size(self, request: Request) -> int:
        return query_int(request, self.page_size_query_param, self.page_size, 1, self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limits = {self.page_size_query_param: (1, self.max_page_size)}
        parameters = bounded(super().get_schema_operation_parameters(view), limits)
        for parameter in parameters:
            if parameter["name"] == self.cursor_query_param:
                parameter["schema"]["minLength"] = 1  # an empty cursor is refused like any forged one
        return parameters

    def encode_cursor(self, cursor: Cursor) -> str:
        plain = json.dumps([cursor.offset, cursor.reverse, cursor.position]).encode("ascii")
        token = cursor_cipher().encrypt(plain).decode("ascii")
        assert self.base_url is not None  # set by paginate_queryset() before any link is made
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def decode_cursor(self, request: Request) -> Cursor | None:
        token = request.query_params.get(self.cursor_query_param)
        if token is None:
            return None
        try:
            offset, reverse, position = json.loads(cursor_cipher().decrypt(token.encode("utf-8")))
        except (InvalidToken, ValueError, TypeError):
            message = "not a cursor this API issued (use the 'next' and 'previous' links as they are)"
            raise exceptions.ValidationError({self.cursor_query_param: [message]}) from None
        return Cursor(offset=offset, reverse=reverse, position=position)


def quota_exceeded(exc: lookups.QuotaExceeded) -> Response:
    response = Response(
        {
            "error": {
                "code": "quota_exceeded",
                "message": f"Daily lookup quota of {exc.quota} reached (one per indicator looked up, per "
                f"cluster shown and per live seller shown in no cluster); resets at {exc.resets_at.isoformat()}.",
                "details": {"quota": exc.quota, "resets_at": exc.resets_at.isoformat()},
            }
        },
        status=429,
    )
    response["Retry-After"] = str(max(1, int((exc.resets_at - timezone.now()).total_seconds())))
    return response


class MeteredMixin:
    """Views that tell a partner what other platforms hold (lookups, and clusters seen through its own
    sellers) answer 429 with the reset time once the key's daily lookup quota is used up."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, lookups.QuotaExceeded):
            return quota_exceeded(exc)
        return super().handle_exception(exc)  # type: ignore[misc]


def unlinked_shown(sellers: list[Seller], summaries: dict[int, Any]) -> int:
    """Linkable sellers shown without a cluster: each tells the partner that no one else links to it."""
    now = timezone.now()
    return sum(1 for s in sellers if s.pk not in summaries and s.is_linkable(now))


def cluster_context(sellers: list[Seller]) -> dict[str, Any]:
    summaries = hooks.cluster_reads().summaries([s.pk for s in sellers]) if sellers else {}
    return {"cluster_summaries": summaries}


@extend_schema(responses={200: SellerSerializer(many=True), 400: ERROR, 404: ERROR, **COMMON_ERRORS})
class SellerListView(MeteredMixin, PartnerScopedMixin, generics.ListAPIView):
    """Your own reported sellers, newest first, filterable. Each distinct cluster shown counts against the
    key's daily lookup quota."""

    required_scope = "read"
    serializer_class = SellerSerializer
    filterset_class = SellerFilter
    pagination_class = SellerPagination

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        def read() -> tuple[dict[int, Any], int, Any]:
            page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
            assert page is not None
            context = cluster_context(page)
            summaries = context["cluster_summaries"]
            data = SellerSerializer(page, many=True, context=context).data
            return summaries, unlinked_shown(page, summaries), data

        # Read (on the replica when there is one), then charge and audit on the primary.
        summaries, unlinked, data = routers.on_replica(read)
        lookups.do_read_clusters(
            partner_of(request).api_key, "seller_list", summaries.values(), unlinked=unlinked
        )
        return self.get_paginated_response(data)


@extend_schema(responses={200: SellerDetailSerializer, 404: ERROR, **COMMON_ERRORS})
class SellerDetailView(MeteredMixin, PartnerScopedMixin, generics.RetrieveAPIView):
    """One of your sellers with its indicator kinds and its actor cluster (null when unlinked). A cluster
    shown counts against the key's daily lookup quota."""

    required_scope = "read"
    serializer_class = SellerDetailSerializer
    lookup_field = "seller_ref"

    def get_queryset(self) -> QuerySet[Seller]:
        return (
            super()
            .get_queryset()
            .select_related("appeal")
            .prefetch_related(
                Prefetch(
                    "sightings",
                    Sighting.objects.select_related("indicator").order_by("indicator__kind", "id"),
                )
            )
        )

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        def read() -> tuple[Seller, dict[int, Any], Any]:
            seller = self.get_object()
            context = cluster_context([seller])
            return seller, context["cluster_summaries"], SellerDetailSerializer(seller, context=context).data

        # A seller just reported may not be on the replica yet: its absence there is checked on the primary.
        seller, summaries, data = routers.on_replica(read, confirm_absence=True)
        lookups.do_read_clusters(
            partner_of(request).api_key,
            "seller_detail",
            summaries.values(),
            "seller",
            str(seller.pk),
            unlinked=unlinked_shown([seller], summaries),
        )
        return Response(data)


class RetractView(PartnerScopedMixin, generics.GenericAPIView):
    """Withdraw a report (e.g. after a successful appeal). The seller stops linking at once. Retracting an
    already retracted seller is harmless and returns the original retraction."""

    required_scope = "submit"
    lookup_field = "seller_ref"
    serializer_class = RetractSerializer

    @extend_schema(
        request=RetractSerializer, responses={200: SellerSerializer, 400: ERROR, 404: ERROR, **COMMON_ERRORS}
    )
    def post(self, request: Request, seller_ref: str) -> Response:
        seller = self.get_object()
        form = RetractSerializer(data=read_json(request))
        form.is_valid(raise_exception=True)
        retention.do_retract(seller, form.validated_data["reason"], partner_of(request).api_key.prefix)
        return Response(SellerSerializer(seller).data)


class AppealView(MeteredMixin, PartnerScopedMixin, generics.GenericAPIView):
    """Record that one of your sellers appealed, or update its appeal (the same request again: one appeal per
    seller). `upheld` lifts the ban: the seller's report is retracted at once, as by `retract/`. Documents'
    SHA-256s are checked against documents other platforms reported as falsified: a match is answered per
    document (how many other platforms, never which) and marks the appeal for your attention. Each document
    counts against the key's daily lookup quota (429 beyond it, nothing stored) and needs the `lookup` scope.
    Audit-logged."""

    required_scope = "submit"
    lookup_field = "seller_ref"
    serializer_class = AppealSerializer

    @extend_schema(
        request=AppealSerializer,
        responses={
            200: OpenApiResponse(AppealResponseSerializer, description="The seller's appeal was updated."),
            201: OpenApiResponse(AppealResponseSerializer, description="The seller's appeal was recorded."),
            400: ERROR,
            404: ERROR,
            409: OpenApiResponse(
                ERROR, description="The appeal was upheld and the report retracted: it stays upheld."
            ),
            **COMMON_ERRORS,
        },
    )
    def post(self, request: Request, seller_ref: str) -> Response:
        seller = self.get_object()
        form = AppealSerializer(data=read_json(request))
        form.is_valid(raise_exception=True)
        appeal_request = appeals.AppealRequest.from_validated(form.validated_data)
        api_key = partner_of(request).api_key
        if appeal_request.documents and not api_key.has_scope("lookup"):
            raise exceptions.PermissionDenied(
                "Attaching documents checks them against other platforms' reports, like a lookup: this API key "
                "lacks the 'lookup' scope."
            )
        try:
            result = appeals.do_record_appeal(seller, api_key, appeal_request)
        except appeals.AppealConflict as exc:
            raise Conflict({"code": "appeal_upheld", "message": str(exc)}) from None
        return Response(appeal_answer(result.appeal, result.checks), status=201 if result.created else 200)


class LookupView(MeteredMixin, APIView):
    """Screen hashed indicators (e.g. of a new seller) against other platforms' reports. Counts against the
    key's daily quota (429 with the reset time beyond it). Audit-logged."""

    required_scope = "lookup"

    @extend_schema(
        request=LookupSerializer,
        responses={200: LookupResponseSerializer, 400: ERROR, **COMMON_ERRORS},
    )
    def post(self, request: Request) -> Response:
        partner = partner_of(request)
        payload = read_json(request)
        pairs = parse_lookup(payload)
        return Response({"results": lookups.do_lookup(partner.api_key, pairs)})


def parse_lookup(payload: Any) -> list[lookups.LookupItem]:
    if not isinstance(payload, dict) or set(payload) != {"indicators"}:
        raise_invalid({"body": ["must be a JSON object with only an 'indicators' list"]})
    items = payload["indicators"]
    limit = settings.EXCHANGE_MAX_LOOKUP_INDICATORS
    if not isinstance(items, list) or not items:
        raise_invalid({"indicators": ["must be a non-empty list of {kind, hash}"]})
    if len(items) > limit:
        raise_invalid({"indicators": [f"at most {limit} indicators per lookup, got {len(items)}"]})
    errors: dict[str, list[str]] = {}
    pairs = []
    for i, item in enumerate(items):
        pair = ingest.seller_indicator_problems(item, f"indicators[{i}]", errors)
        if pair:
            pairs.append(pair)
    if errors:
        raise_invalid(errors)
    return pairs


def query_int(request: Request, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    """A whole-number query parameter: absent means `default`; anything else outside minimum..maximum, or not
    a number, is a 400 naming the parameter (DRF's paginators silently used their defaults instead)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
    if (
        not (raw.isascii() and raw.isdigit())
        or int(raw) < minimum
        or (maximum is not None and int(raw) > maximum)
    ):
        raise exceptions.ValidationError({name: [f"must be a whole number {bounds}"]})
    return int(raw)


def bounded(
    parameters: list[dict[str, Any]], limits: Mapping[str, tuple[int, int | None]]
) -> list[dict[str, Any]]:
    """The paginator's schema parameters with the bounds `query_int` enforces."""
    for parameter in parameters:
        if parameter["name"] in limits:
            minimum, maximum = limits[parameter["name"]]
            parameter["schema"] = {"type": "integer", "minimum": minimum}
            if maximum is not None:
                parameter["schema"]["maximum"] = maximum
    return parameters
