"""Admin for what partners report (sellers, indicators, submissions).

Querysets come from `accounts.scoping`: a partner analyst sees only their platform's sellers; indicators
(keyed tokens shared across platforms) and submissions are for exchange analysts. An
indicator's linking override (mark common / force include) is changed here, with a reason, and triggers a
recomputation of the clusters it touches.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.admin import DurableSaveAdmin, ReadOnlyMixin, ScopedModelAdmin
from accounts.models import AuditEntry
from accounts.scoping import scope_of
from exchange.hash_search import HashSearchAdmin, HashSearchForm, tokens_for
from exchange.models import Indicator, Linking, Seller, Submission
from exchange.normalization import REASONS, STRONG_KINDS
from graph.actions import do_set_indicator_linking
from graph.clustering import hub_rule
from graph.models import ActorCluster

HASH_SEARCH_LIMIT = 100


# ------------------------------------------------------------------------------------------------ sellers


class ReasonFilter(admin.SimpleListFilter):
    """Sellers reported for a reason (`?reason=`); the cluster list's filter shares its choices."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(reason, reason.replace("_", " ")) for reason in REASONS]

    def reason(self) -> str | None:
        """The chosen reason, or None when there is none or it is not one of REASONS."""
        value = self.value()
        return value if value in REASONS else None

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        reason = self.reason()
        return queryset if reason is None else queryset.filter(Seller.reason_q(reason))


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
        return ", ".join(obj.reasons)

    @admin.display(description="cluster")
    def cluster(self, obj: Seller) -> str:
        return self._cluster_link(obj, by_ref=False)

    @admin.display(description="cluster")
    def cluster_reference(self, obj: Seller) -> str:
        return self._cluster_link(obj, by_ref=True)

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


# ------------------------------------------------------------------------------------------------ indicators


class SharedFilter(admin.SimpleListFilter):
    title = "shared"
    parameter_name = "shared"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Held by 2+ sellers"), ("no", "Held by one seller")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(holders__gte=2)
        if self.value() == "no":
            return queryset.filter(holders__lt=2)
        return queryset


class LinkingForm(forms.ModelForm):
    """The one thing an analyst changes on an indicator: whether it may link, and why."""

    class Meta:
        model = Indicator
        fields = ("linking", "linking_reason")
        widgets = {
            "linking": forms.RadioSelect,
            "linking_reason": forms.Textarea(attrs={"rows": 3, "cols": 70}),
        }
        labels = {"linking_reason": "Reason"}
        help_texts = {"linking_reason": "Required when you change how the indicator links. Kept with it."}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "linking" in self.changed_data and not (cleaned.get("linking_reason") or "").strip():
            self.add_error("linking_reason", "Say why: the next analyst will want to know.")
        return cleaned


@admin.register(Indicator)
class IndicatorAdmin(DurableSaveAdmin, HashSearchAdmin, ScopedModelAdmin):
    form = LinkingForm
    list_display = (
        "indicator",
        "kind",
        "holders",
        "linking",
        "linking_changed_by",
        "linking_changed_at",
        "first_seen",
    )
    list_filter = ("linking", SharedFilter, "kind")
    search_fields = ("token",)
    search_help_text = (
        "A token prefix. Search by transport hash with the form below (the hash stays out of URLs)."
    )
    change_list_template = "admin/exchange/indicator/change_list.html"
    ordering = ("-id",)  # newest first on the primary key; sort by holders with the column
    fieldsets = (
        (None, {"fields": ("kind", "strength", "token_display", "first_seen", "holding", "clusters")}),
        ("Linking", {"fields": ("linking", "linking_reason", "linking_changed_by", "linking_changed_at")}),
    )
    readonly_fields = (
        "kind",
        "strength",
        "token_display",
        "first_seen",
        "holding",
        "clusters",
        "linking_changed_by",
        "linking_changed_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        return queryset.filter(token__startswith=term), False

    def hash_search_view(self, request: HttpRequest) -> HttpResponse:
        """The indicators with this transport hash, of any kind (exchange analysts: partners have no
        indicator admin). Posted, never in a URL; audited with the number of matches, never the hash."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        form = HashSearchForm(request.POST)
        context: dict[str, Any] = {}
        status = 200
        if form.is_valid():
            found = self.get_queryset(request).filter(
                token__in=tokens_for(form.cleaned_data["transport_hash"])
            )
            indicators = list(found[:HASH_SEARCH_LIMIT])
            AuditEntry.objects.record(
                "admin_indicator_hash_search",
                request.user.get_username(),
                scope_of(request.user).platform_id,
                matches=len(indicators),
            )
            rows = [(i, reverse("admin:exchange_indicator_change", args=[i.pk])) for i in indicators]
            context = {"rows": rows, "matches": len(indicators), "searched": True}
        else:
            context, status = {"errors": form.errors["transport_hash"]}, 400
        context = {
            **self.admin_site.each_context(request),
            **self.hash_search_context(request),
            "opts": self.opts,
            "title": "Indicators by transport hash",
            **context,
        }
        return TemplateResponse(request, "admin/exchange/indicator/hash_search.html", context, status=status)

    @admin.display(description="indicator", ordering="kind")
    def indicator(self, obj: Indicator) -> str:
        return format_html('{} <span class="mono">{}…</span>', obj.kind, obj.token[:12])

    @admin.display(description="strength")
    def strength(self, obj: Indicator) -> str:
        return "strong" if obj.kind in STRONG_KINDS else "weak"

    @admin.display(description="token")
    def token_display(self, obj: Indicator) -> str:
        return format_html(
            '<span class="mono">{}</span> <span class="quiet">(pepper v{})</span>', obj.token, obj.key_version
        )

    @admin.display(description="held by")
    def holding(self, obj: Indicator) -> str:
        now = timezone.now()
        sellers = Seller.objects.filter(sightings__indicator=obj)
        linkable = sellers.linkable(now)
        count = sellers.count()
        per_platform = list(
            linkable.values("platform_id").annotate(n=Count("id")).values_list("n", flat=True)
        )
        active, platforms = sum(per_platform), len(per_platform)
        rule = hub_rule()
        limit, cap, counted = (
            rule.threshold(obj.kind),
            rule.cap(obj.kind),
            rule.counted(obj.kind, per_platform),
        )
        reason = rule.suppression(obj.kind, per_platform, obj.linking)
        if obj.linking == Linking.COMMON:
            state = "suppressed: marked common"
        elif obj.linking == Linking.INCLUDE:
            state = "links: forced in whatever its count"
        elif reason == "threshold":
            state = f"suppressed automatically: {counted} counted sellers, more than {limit}"
        else:
            state = f"links ({counted} counted; suppressed automatically above {limit})"
        state += f"; each platform counts for at most {cap}"
        if reason is None and any(rule.platform_hub(obj.kind, n, obj.linking) for n in per_platform):
            state += f"; a platform holding it more than {limit} times links none of its holders through it"
        return f"{active} active sellers on {platforms} platform(s) ({count} including retracted/expired); {state}"

    @admin.display(description="clusters")
    def clusters(self, obj: Indicator) -> str:
        rows = (
            ActorCluster.objects.live()
            .filter(members__seller__sightings__indicator=obj)
            .distinct()
            .ranked()[:20]
        )
        return (
            format_html_join(
                ", ",
                '<a href="{}">#{}</a> (risk {})',
                ((reverse("admin:graph_actorcluster_change", args=[c.pk]), c.pk, c.risk) for c in rows),
            )
            or "–"
        )

    def save_model(self, request: HttpRequest, obj: Indicator, form: forms.ModelForm, change: bool) -> None:
        if "linking" not in form.changed_data and "linking_reason" not in form.changed_data:
            return
        do_set_indicator_linking(
            obj,
            request.user.get_username(),
            form.cleaned_data["linking"],
            form.cleaned_data["linking_reason"],
        )


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
