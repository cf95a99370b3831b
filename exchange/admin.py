"""Admin for what partners report (sellers, submissions, sellers' appeals).

Querysets come from `accounts.scoping`: a partner analyst sees only their platform's sellers and their appeals;
submissions are for exchange analysts. Indicators are administered in `graph/indicator_admin.py` (their page is about linking:
hub suppression, overrides, which is graph's), and the audit log in `accounts/admin.py`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.admin import ReadOnlyMixin, ScopedModelAdmin
from accounts.scoping import scope_of
from exchange import hooks
from exchange.models import REASON_LABELS, Appeal, Seller, Submission
from exchange.normalization import REASONS

# ------------------------------------------------------------------------------------------------ sellers


class ReasonFilter(admin.SimpleListFilter):
    """Sellers reported for a reason (`?reason=`); the cluster list's filter shares its choices."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(REASON_LABELS.items())

    def reason(self) -> str | None:
        """The chosen reason, or None when there is none or it is not one of REASONS."""
        value = self.value()
        return value if value in REASONS else None

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        reason = self.reason()
        return queryset if reason is None else queryset.filter(Seller.reason_q(reason))


SHOWN_CLUSTER = "shown_cluster"  # set on a partner analyst's page of sellers: the cluster summary they see
NOT_READ = object()


class SellerChangeList(ChangeList):
    """A partner analyst's page of sellers reads the clusters they see them in once for the whole page."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if scope_of(request.user).everything:
            return
        sellers = list(self.result_list)
        shown = hooks.cluster_reads().summaries([seller.pk for seller in sellers]) if sellers else {}
        for seller in sellers:
            seller.__dict__[SHOWN_CLUSTER] = shown.get(seller.pk)


@admin.register(Seller)
class SellerAdmin(ReadOnlyMixin, ScopedModelAdmin):
    list_display = (
        "seller_ref",
        "platform",
        "status",
        "reasons_list",
        "reported_at",
        "expires_at",
        "cluster",
    )
    list_select_related = ("platform", "cluster_membership__cluster")
    search_fields = ("seller_ref",)
    search_help_text = "A seller reference (starts with)."
    ordering = ("-id",)
    fields = (
        "platform",
        "seller_ref",
        "status",
        "reasons_list",
        "first_reported_at",
        "reported_at",
        "expires_at",
        "retracted_at",
        "retraction_reason",
        "retracted_by",
        "cluster",
        "indicators",
    )
    readonly_fields = (*fields, "indicator_kinds", "cluster_reference")

    def get_list_display(self, request: HttpRequest) -> Any:
        if scope_of(request.user).everything:
            return self.list_display
        # A partner analyst knows clusters by opaque reference, never by id (ids tell exchange-wide volume).
        return [("cluster_reference" if name == "cluster" else name) for name in self.list_display]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        filters: list[Any] = ["status", ReasonFilter, ("retracted_at", admin.EmptyFieldListFilter)]
        if scope_of(request.user).everything:
            filters.insert(0, "platform")
        return filters

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        return (queryset.filter(seller_ref__startswith=term), False) if term else (queryset, False)

    @admin.display(description="reasons")
    def reasons_list(self, obj: Seller) -> str:
        return ", ".join(obj.reason_labels)

    @admin.display(description="cluster")
    def cluster(self, obj: Seller) -> str:
        return self._cluster_link(obj, by_ref=False)

    @admin.display(description="cluster")
    def cluster_reference(self, obj: Seller) -> str:
        """The cluster a partner analyst sees the seller in: none when their platform detached the seller
        with a false-positive opinion (graph's `ClusterMemberQuerySet.summaries`, read through exchange.hooks)."""
        summary = obj.__dict__.get(SHOWN_CLUSTER, NOT_READ)
        if summary is NOT_READ:  # the seller's own page: one read
            summary = hooks.cluster_reads().summaries([obj.pk]).get(obj.pk)
        if summary is None:
            return "–"
        url = reverse("admin:graph_actorcluster_change", args=[summary["id"]])
        return format_html(
            '<a href="{}">{}</a> ({} sellers, risk {})', url, summary["id"], summary["size"], summary["risk"]
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SellerChangeList

    @staticmethod
    def _cluster_link(obj: Seller, by_ref: bool) -> str:
        """The seller's cluster, named and linked by its id (exchange analysts) or its opaque ref (partners)."""
        membership = getattr(obj, "cluster_membership", None)
        if membership is None:
            return "–"
        cluster = membership.cluster
        key = cluster.ref if by_ref else cluster.pk
        url = reverse("admin:graph_actorcluster_change", args=[key])
        label = cluster.ref if by_ref else f"#{cluster.pk}"
        return format_html(
            '<a href="{}">{}</a> ({} sellers, risk {})', url, label, cluster.size, cluster.risk
        )

    @admin.display(description="indicators")
    def indicators(self, obj: Seller) -> str:
        rows = obj.sightings.select_related("indicator").order_by("indicator__kind", "first_seen")
        return format_html_join(
            mark_safe("<br>"),
            '{} <a class="mono" href="{}">{}…</a> <span class="quiet">since {}</span>',
            (
                (
                    s.indicator.kind,
                    reverse("admin:exchange_indicator_change", args=[s.indicator_id]),
                    s.indicator.token[:12],
                    f"{s.first_seen:%Y-%m-%d}",
                )
                for s in rows
            ),
        )

    @admin.display(description="indicator kinds")
    def indicator_kinds(self, obj: Seller) -> str:
        kinds = obj.sightings.order_by().values_list("indicator__kind", flat=True).distinct()
        return ", ".join(sorted(kind.replace("_", " ") for kind in kinds)) or "–"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Tokens are the exchange's: a partner analyst sees which kinds their platform reported.
        if scope_of(request.user).everything:
            return list(self.fields)
        fields = [("cluster_reference" if name == "cluster" else name) for name in self.fields[:-1]]
        return [*fields, "indicator_kinds"]


# ------------------------------------------------------------------------------------------------ submissions


@admin.register(Submission)
class SubmissionAdmin(ReadOnlyMixin, ScopedModelAdmin):
    list_display = ("created_at", "platform", "sellers", "indicators", "sightings_created", "api_key")
    list_filter = ("platform",)
    list_select_related = ("platform", "api_key")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fields = (
        "created_at",
        "platform",
        "api_key",
        "idempotency_key",
        "sellers",
        "indicators",
        "sightings_created",
    )


# ------------------------------------------------------------------------------------------------ appeals


@admin.register(Appeal)
class AppealAdmin(ReadOnlyMixin, ScopedModelAdmin):
    """Sellers' appeals as partners record them (`POST .../appeals/`, exchange.appeals). "Needs attention": a
    document matches one another platform reported as falsified. Documents show as counts: their keyed
    fingerprints are the exchange's, and another platform's match is never named."""

    list_display = ("seller_ref", "platform", "outcome", "needs_attention", "document_count", "updated_at")
    list_select_related = ("seller__platform",)
    search_fields = ("seller__seller_ref",)
    search_help_text = "A seller reference (starts with)."
    ordering = ("-updated_at", "-id")
    fields = (
        "seller_ref",
        "platform",
        "outcome",
        "note",
        "needs_attention",
        "attention_since",
        "document_count",
        "created_at",
        "updated_at",
        "decided_at",
        "report",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                documents_held=Count("documents"),
                documents_falsified=Count("documents", filter=Q(documents__falsified=True)),
            )
        )

    def get_list_display(self, request: HttpRequest) -> Any:
        if scope_of(request.user).everything:
            return self.list_display
        return [name for name in self.list_display if name != "platform"]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        filters: list[Any] = ["needs_attention", "outcome"]
        if scope_of(request.user).everything:
            filters.insert(0, ("seller__platform", admin.RelatedOnlyFieldListFilter))
        return filters

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        return (queryset.filter(seller__seller_ref__startswith=term), False) if term else (queryset, False)

    @admin.display(description="seller", ordering="seller__seller_ref")
    def seller_ref(self, obj: Appeal) -> str:
        return obj.seller.seller_ref

    @admin.display(description="platform", ordering="seller__platform__name")
    def platform(self, obj: Appeal) -> str:
        return obj.seller.platform.name

    @admin.display(description="documents", ordering="documents_held")
    def document_count(self, obj: Appeal) -> str:
        held, falsified = getattr(obj, "documents_held", 0), getattr(obj, "documents_falsified", 0)
        return f"{held} ({falsified} falsified)" if falsified else str(held)

    @admin.display(description="seller's report")
    def report(self, obj: Appeal) -> str:
        seller = obj.seller
        state = f"retracted {seller.retracted_at:%Y-%m-%d %H:%M}" if seller.retracted_at else "live"
        url = reverse("admin:exchange_seller_change", args=[seller.pk])
        return format_html('<a href="{}">{}</a> ({})', url, seller.seller_ref, state)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if scope_of(request.user).everything:
            return list(self.fields)
        return [name for name in self.fields if name != "platform"]
