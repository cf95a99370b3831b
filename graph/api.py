"""Partner API v1: the actor clusters a partner's sellers are in (graph's part of the API).

The routes live with the rest of the API in `exchange/urls.py`, which names this module by string (the
root URLconf composes the apps, as INSTALLED_APPS does): exchange sits below graph and imports nothing of it.
Scoping, metering, errors and serializers are the partner API's own (exchange/views.py, exchange/serializers.py).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import exchange.converters  # noqa: F401  (registers cluster_ref: this module is imported outside the URLconf too)
from exchange import lookups, routers
from exchange.filters import RiskFilter, StrictBooleanFilter, UtcDateTimeFilter
from exchange.serializers import (
    ClusterDetailSerializer,
    ClusterSummarySerializer,
    OpinionOutSerializer,
    OpinionSerializer,
)
from exchange.views import (
    COMMON_ERRORS,
    ERROR,
    MeteredMixin,
    PartnerScope,
    PartnerScopedMixin,
    bounded,
    partner_of,
    query_int,
    read_json,
)
from graph.actions import OpinionNotFound, OpinionRefused, do_record_opinion
from graph.models import ActorCluster, Opinion

# A partner reaches the live clusters that contain at least one of its sellers (less those it detached with
# false-positive opinions: `ActorCluster.seen_by`).
LIVE_CLUSTERS = PartnerScope(
    lambda platform_id: ActorCluster.objects.live().seen_by(platform_id),
    ActorCluster.objects.none,
)


class ClusterFilter(django_filters.FilterSet):
    cross_platform = StrictBooleanFilter()
    min_risk = RiskFilter(field_name="risk", lookup_expr="gte")
    changed_since = UtcDateTimeFilter(field_name="changed_at", lookup_expr="gte")

    class Meta:
        model = ActorCluster
        fields = ("cross_platform", "min_risk", "changed_since")


class ClusterPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000

    def get_limit(self, request: Request) -> int:
        return query_int(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return query_int(request, self.offset_query_param, 0, 0)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limits = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, None)}
        return bounded(super().get_schema_operation_parameters(view), limits)


@extend_schema(responses={200: ClusterSummarySerializer(many=True), 400: ERROR, **COMMON_ERRORS})
class ClusterListView(MeteredMixin, PartnerScopedMixin, generics.ListAPIView):
    """Actor clusters that contain your sellers: cross-platform first, highest risk first. Each cluster on
    the page counts against the key's daily lookup quota."""

    required_scope = "read"
    scope = LIVE_CLUSTERS
    filterset_class = ClusterFilter
    pagination_class = ClusterPagination
    serializer_class = ClusterSummarySerializer

    def get_queryset(self) -> QuerySet[Any]:
        return super().get_queryset().ranked()  # type: ignore[attr-defined]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        def read() -> list[dict[str, Any]]:
            page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
            assert page is not None
            return [cluster.summary() for cluster in page]

        # Read (on the replica when there is one), then charge and audit on the primary.
        summaries = routers.on_replica(read)
        lookups.do_read_clusters(partner_of(request).api_key, "cluster_list", summaries)
        return self.get_paginated_response(summaries)


@extend_schema(responses={200: ClusterDetailSerializer, 404: ERROR, **COMMON_ERRORS})
class ClusterDetailView(MeteredMixin, PartnerScopedMixin, generics.RetrieveAPIView):
    """One cluster: your own members by seller_ref, other platforms' members only as counts. Counts against
    the key's daily lookup quota."""

    required_scope = "read"
    scope = LIVE_CLUSTERS
    lookup_field = "ref"
    lookup_url_kwarg = "ref"
    serializer_class = ClusterDetailSerializer

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        partner = partner_of(request)

        def read() -> tuple[str, dict[str, Any], dict[str, Any]]:
            cluster = self.get_object()
            view = cluster.partner_view(partner.platform_id) | opinion_view(cluster, partner.platform_id)
            return cluster.ref, cluster.summary(), view

        # A cluster the replica has not replayed yet is looked for on the primary before it is a 404.
        ref, summary, view = routers.on_replica(read, confirm_absence=True)
        lookups.do_read_clusters(partner.api_key, "cluster_detail", [summary], "cluster", ref)
        return Response(summary | view)


def opinion_view(cluster: ActorCluster, platform_id: int) -> dict[str, Any]:
    """The opinions part of a cluster's page: how many platforms gave each opinion (never which), and the
    caller's own opinions in full."""
    own = (
        cluster.opinions.filter(platform_id=platform_id)
        .select_related("seller")
        .order_by("-created_at", "-id")
    )
    return {
        "opinions": cluster.opinions.platform_counts(),
        "your_opinions": [opinion_out(opinion) for opinion in own],
    }


def opinion_out(opinion: Opinion) -> dict[str, Any]:
    return {
        "id": opinion.pk,
        "opinion": opinion.kind,
        "seller_ref": opinion.seller.seller_ref if opinion.seller else None,
        "note": opinion.note,
        "acted_at": opinion.acted_at,
        "created_at": opinion.created_at,
        "review": opinion.review or None,
    }


class OpinionCreateView(APIView):
    """Give your opinion on a cluster one of your sellers is in, or that one of your lookups showed you:
    `seen_too`, `false_positive` (name your seller: it is detached from the cluster for you at once and waits
    for the exchange analysts' review), `disputed` or `actioned` (with `acted_at`). Other platforms see only how
    many platforms gave each opinion, never which, and never your note. Corroborations and false positives move
    the cluster's risk score. Any other cluster, or a seller_ref you never reported, is a 404. Audit-logged."""

    required_scope = "submit"

    @extend_schema(
        operation_id="clusters_opinions_create",
        request=OpinionSerializer,
        responses={
            201: OpinionOutSerializer,
            200: OpenApiResponse(
                OpinionOutSerializer,
                description="A `false_positive` on a seller for which yours already stands: the standing one.",
            ),
            400: ERROR,
            404: ERROR,
            **COMMON_ERRORS,
        },
    )
    def post(self, request: Request, ref: str) -> Response:
        partner = partner_of(request)
        form = OpinionSerializer(data=read_json(request))
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            recorded = do_record_opinion(
                partner.api_key,
                ref,
                data["opinion"],
                seller_ref=data.get("seller_ref"),
                note=data.get("note", ""),
                acted_at=data.get("acted_at"),
            )
        except OpinionNotFound:
            raise exceptions.NotFound() from None
        except OpinionRefused as exc:
            raise exceptions.ValidationError({exc.field: [str(exc)]}) from None
        return Response(opinion_out(recorded.opinion), status=201 if recorded.created else 200)


urlpatterns = [
    path("clusters/", ClusterListView.as_view(), name="cluster-list"),
    path("clusters/<cluster_ref:ref>/", ClusterDetailView.as_view(), name="cluster-detail"),
    path("clusters/<cluster_ref:ref>/opinions/", OpinionCreateView.as_view(), name="cluster-opinions"),
]
