"""The investigator's workbench: actor clusters in the Django admin.

The cluster list is ranked (cross-platform first, highest risk first) and filterable the ways analysts triage;
the cluster page explains the cluster (members by platform, the indicators that hold it together, an evidence
chain between any two members, the risk parts, the history and a picture) and carries the workflow (status,
assignee, notes). What a viewer may see is decided in `accounts.scoping`; `graph.explain` reduces other
platforms to counts and aliases for partner analysts. Every cluster view is audit-logged.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, Model, OuterRef, Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

import graph.approval_admin  # registers the four-eyes approvals admin
import graph.indicator_admin  # registers the indicator admin
import graph.merge_admin  # registers the held merges admin
import graph.opinion_admin  # registers the opinions admin (false-positive reviews, time to action)
import graph.report_admin  # registers the report outbox admin
import graph.webhook_admin  # noqa: F401  (registers the webhook outbox admin)
from accounts.admin import DurableSaveAdmin, NamedDefaultFilter, ScopedModelAdmin
from accounts.models import AuditEntry, Platform
from accounts.scoping import Scope, scope_of
from exchange.admin import ReasonFilter as SellerReasonFilter
from exchange.hash_search import (
    HASH_SEARCH_LIMIT,
    HashQueryRefusingChangeList,
    HashSearchAdmin,
    HashSearchForm,
    tokens_for,
)
from exchange.lookups import QuotaExceeded, charge_platform_quota
from exchange.models import Indicator, Seller
from graph import evidence, risk
from graph.actions import (
    CLUSTER_WORK_FIELDS,
    FOUR_EYES_STATUSES,
    AdvisoryError,
    ApprovalRefused,
    WorkflowError,
    do_publish_advisory,
    do_request_cluster_status,
    do_update_cluster,
    do_withdraw_advisory,
)
from graph.explain import Explanation, explain, member_counts
from graph.exports import referral_package
from graph.models import (
    RANK_ORDER,
    ActorCluster,
    ActorClusterQuerySet,
    Approval,
    ClusterMember,
    ClusterStatus,
    Opinion,
    OpinionKind,
    Review,
)
from graph.network import network
from graph.picture import render
from graph.timeline import cluster_timeline
from graph.transparency_admin import TransparencyReportAdmin

# How a cluster is addressed in admin URLs: its opaque reference for everyone, its id for exchange analysts.
CLUSTER_REF = re.compile(r"ac_[0-9a-f]{8,21}")
CLUSTER_ID = re.compile(r"[0-9]{1,18}")
EXCHANGE_SEARCH_HELP = (
    "A seller reference (exact), a cluster id (#123) or reference (ac_…). "
    "Search by transport hash with the form below (the hash stays out of URLs)."
)
PARTNER_SEARCH_HELP = (
    "One of your platform's seller references (exact) or a cluster reference (ac_…). "
    "Search by transport hash with the form below (the hash stays out of URLs)."
)
RISK_BANDS = (
    ("high", "High (70+)", 70, 101),
    ("medium", "Medium (40-69)", 40, 70),
    ("low", "Low (<40)", 0, 40),
)


def risk_band(score: int) -> str:
    return next(name for name, _, low, high in RISK_BANDS if low <= score < high)


def exchange_analysts() -> QuerySet[Any]:
    """Who a cluster can be assigned to: active exchange analysts and superusers."""
    return (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .filter(Q(is_superuser=True) | Q(analyst__isnull=False, analyst__platform__isnull=True))
        .order_by("username")
    )


# ------------------------------------------------------------------------------------------------ filters


class StateFilter(NamedDefaultFilter):
    """Live clusters by default; dissolved ones are history."""

    title = "state"
    parameter_name = "state"
    default_label = "Live"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("dissolved", "Dissolved"), ("all", "Live and dissolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "dissolved":
            return queryset.filter(dissolved_at__isnull=False)
        if self.value() == "all":
            return queryset
        return queryset.filter(dissolved_at__isnull=True)


class PlatformFilter(admin.SimpleListFilter):
    """Clusters with members on a platform (exchange analysts only: a partner's clusters all contain theirs)."""

    title = "platform"
    parameter_name = "platform"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in Platform.objects.order_by("name").values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value and value.isdigit():
            return cast(ActorClusterQuerySet, queryset).containing_platform(int(value))
        return queryset


class RiskBandFilter(admin.SimpleListFilter):
    title = "risk"
    parameter_name = "risk"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, title) for name, title, _, _ in RISK_BANDS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        for name, _, low, high in RISK_BANDS:
            if self.value() == name:
                return queryset.filter(risk__gte=low, risk__lt=high)
        return queryset


class ReasonFilter(SellerReasonFilter):
    """Clusters with a member reported for a reason. A partner analyst filters on their own sellers' reasons:
    other platforms' reports are not theirs to query."""

    title = "reason reported"

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        reason = self.reason()
        if reason is None:
            return queryset
        members = ClusterMember.objects.filter(Seller.reason_q(reason, "seller__"), cluster=OuterRef("pk"))
        scope = scope_of(request.user)
        if not scope.everything and scope.platform_id is not None:
            members = members.filter(seller__platform_id=scope.platform_id)
        return queryset.filter(Exists(members))


class FalsePositiveFilter(admin.SimpleListFilter):
    """Clusters on which a platform said one of its sellers is not the actor (any false-positive opinion, or
    those still waiting for an exchange analyst's review). Everyone sees these counts on the cluster pages."""

    title = "false-positive opinions"
    parameter_name = "false_positive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Has false-positive opinions"), ("pending", "Pending review")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        opinions = Opinion.objects.filter(cluster=OuterRef("pk"), kind=OpinionKind.FALSE_POSITIVE)
        if self.value() == "yes":
            return queryset.filter(Exists(opinions))
        if self.value() == "pending":
            return queryset.filter(Exists(opinions.filter(review=Review.PENDING)))
        return queryset


class ChangedSinceFilter(admin.SimpleListFilter):
    title = "changed since"
    parameter_name = "changed"
    PERIODS = {"1d": ("Last 24 hours", 1), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, title) for key, (title, _) in self.PERIODS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        period = self.PERIODS.get(self.value() or "")
        if period is None:
            return queryset
        return queryset.filter(changed_at__gte=timezone.now() - timedelta(days=period[1]))


class AdvisoryFilter(admin.SimpleListFilter):
    """Exchange analysts only: which clusters are in the advisories collection, and which could be."""

    title = "advisory"
    parameter_name = "advisory"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("listed", "Published (in the advisories)"), ("publishable", "Confirmed, not published")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        clusters = cast(ActorClusterQuerySet, queryset)
        if self.value() == "listed":
            return clusters.advisories()
        if self.value() == "publishable":
            return clusters.publishable().filter(published_at__isnull=True)
        return queryset


class AssigneeFilter(admin.SimpleListFilter):
    title = "assigned"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "To me"), ("nobody", "Unassigned")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "me":
            return queryset.filter(assignee_id=request.user.pk)
        if self.value() == "nobody":
            return queryset.filter(assignee__isnull=True)
        return queryset


# ------------------------------------------------------------------------------------------------ forms


class UsernameChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.get_username())


class ClusterWorkForm(forms.ModelForm):
    """Status, assignee and notes, with the workflow's transitions only."""

    assignee = UsernameChoiceField(queryset=exchange_analysts(), required=False)

    class Meta:
        model = ActorCluster
        fields = ("status", "assignee", "notes")
        widgets = {"notes": forms.Textarea(attrs={"rows": 4, "cols": 80})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = (self.instance.status, *self.instance.next_statuses())
        status = self.fields.get("status")
        if isinstance(status, forms.ChoiceField):
            status.choices = [
                (value, f"{label} (needs a second analyst)" if value in FOUR_EYES_STATUSES else label)
                for value, label in ClusterStatus.choices
                if value in allowed
            ]
            status.help_text = (
                "New → investigating → confirmed actor or dismissed. Confirming or dismissing waits for a "
                "second exchange analyst's approval (Approvals); nothing changes for partners until then."
            )

    def clean_status(self) -> str:
        status: str = self.cleaned_data["status"]
        error = self.instance.transition_error(status)
        if error:
            raise forms.ValidationError(error)
        return status


# ------------------------------------------------------------------------------------------------ admin


def describe_platforms(clusters: list[ActorCluster], own: int | None) -> None:
    """Sets each cluster's `platforms_spanned` in two queries (no query per row). A partner analyst (`own`)
    reads their own platform by name and the others as a count."""
    counts = member_counts([cluster.pk for cluster in clusters])
    names = dict(Platform.objects.values_list("pk", "name"))
    for cluster in clusters:
        members = counts.get(cluster.pk, {})
        if own is None:
            parts = [
                f"{names.get(p, p)} ({n})" for p, n in sorted(members.items(), key=lambda i: (-i[1], i[0]))
            ]
        else:
            others = len(members) - (1 if own in members else 0)
            parts = [f"{names.get(own, 'yours')} ({members.get(own, 0)})"]
            if others:
                parts.append(f"{others} other{'s' if others > 1 else ''}")
        cluster.platforms_spanned = f"{cluster.platform_count}: " + ", ".join(parts)  # type: ignore[attr-defined]


def cluster_url(cluster: ActorCluster, scope: Scope) -> str:
    """A partner analyst addresses clusters by opaque reference only: ids would tell exchange-wide volume."""
    return reverse("admin:graph_actorcluster_change", args=[cluster.pk if scope.everything else cluster.ref])


class ClusterChangeList(HashQueryRefusingChangeList):
    """The cluster list: members per platform on every row; partner analysts' rows link by reference."""

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.scope = scope_of(request.user)
        super().__init__(request, *args, **kwargs)
        self.search_help_text = EXCHANGE_SEARCH_HELP if self.scope.everything else PARTNER_SEARCH_HELP

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        describe_platforms(list(self.result_list), self.scope.platform_id)

    def url_for_result(self, result: Model) -> str:
        if self.scope.everything:
            return super().url_for_result(result)
        # The reference as it is (URL-safe), so that the link is the one report emails carry.
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=(cast(ActorCluster, result).ref,),
            current_app=self.model_admin.admin_site.name,
        )


@admin.register(ActorCluster)
class ActorClusterAdmin(TransparencyReportAdmin, DurableSaveAdmin, HashSearchAdmin, ScopedModelAdmin):
    form = ClusterWorkForm
    list_display = ("cluster", "size", "platforms", "risk_score", "status_label", "assignee", "last_change")
    list_display_links = ("cluster",)
    # Partner analysts: the reference instead of the id, and no assignee (exchange-only, as on the cluster page).
    partner_list_display = ("reference", "size", "platforms", "risk_score", "status_label", "last_change")
    list_select_related = ("assignee",)
    list_per_page = 50
    ordering = RANK_ORDER
    search_fields = ("ref",)  # shows the search box; get_search_results does the real work
    search_help_text = EXCHANGE_SEARCH_HELP  # ClusterChangeList tells partner analysts theirs
    change_form_template = "admin/graph/actorcluster/change_form.html"
    change_list_template = "admin/graph/actorcluster/change_list.html"
    save_on_top = False
    actions = ("publish_advisories", "withdraw_advisories")

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        referral = path(
            "<path:object_id>/referral/",
            self.admin_site.admin_view(self.referral_view),
            name=f"{info}_referral",
        )
        advisory = path(
            "<path:object_id>/advisory/",
            self.admin_site.admin_view(self.advisory_view),
            name=f"{info}_advisory",
        )
        return [referral, advisory, *super().get_urls()]  # before `<path:object_id>/`, which would take them

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        filters: list[Any] = [
            StateFilter,
            ("cross_platform", admin.BooleanFieldListFilter),
            "status",
            RiskBandFilter,
            ReasonFilter,
            FalsePositiveFilter,
        ]
        filters.append(ChangedSinceFilter)
        if scope_of(request.user).everything:
            filters[2:2] = [PlatformFilter]
            filters.extend([AssigneeFilter, AdvisoryFilter])
        return filters

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ClusterChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        return self.list_display if scope_of(request.user).everything else self.partner_list_display

    def get_list_display_links(self, request: HttpRequest, list_display: Any) -> Any:
        return self.list_display_links if scope_of(request.user).everything else ("reference",)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        """By reference (`ac_…`, the form report emails link to) for everyone in scope; by id for exchange
        analysts only. Anything else, malformed or out of scope, does not exist (404)."""
        if from_field is not None:
            return super().get_object(request, object_id, from_field)
        queryset = self.get_queryset(request)
        # The admin unquotes ids before they get here, and its unquote reads "_23" as "#": a ref such as
        # "ac_23f4…" (6 in 256 refs) arrives as "ac#f4…". Quoting it again gives the ref back.
        ref = object_id if CLUSTER_REF.fullmatch(object_id) else quote(object_id)
        if CLUSTER_REF.fullmatch(ref):
            found = queryset.filter(ref=ref).first()
        elif CLUSTER_ID.fullmatch(object_id) and scope_of(request.user).everything:
            found = queryset.filter(pk=int(object_id)).first()
        else:
            found = None
        if found is None:
            raise Http404(f"No {self.opts.verbose_name} with this id.")
        return found

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Notes may name other platforms' sellers: exchange analysts only.
        return ["status", "assignee", "notes"] if scope_of(request.user).everything else ["status"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # clusters come from linking, never by hand

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return scope_of(request.user).everything and super().has_change_permission(request, obj)

    def has_publish_permission(self, request: HttpRequest) -> bool:
        """Publishing and withdrawing advisories: exchange analysts who may work on clusters."""
        return self.has_change_permission(request)

    # --- columns

    @admin.display(description="cluster", ordering="id")
    def cluster(self, obj: ActorCluster) -> str:
        dissolved = " (dissolved)" if obj.dissolved_at else ""
        return format_html('#{} <span class="quiet">{}</span>{}', obj.pk, obj.ref, dissolved)

    @admin.display(description="cluster", ordering="ref")
    def reference(self, obj: ActorCluster) -> str:
        return format_html("{}{}", obj.ref, " (dissolved)" if obj.dissolved_at else "")

    # Column orderings name the plain field, so that the ranked default ordering shows on the risk column.
    @admin.display(description="platforms spanned", ordering="platform_count")
    def platforms(self, obj: ActorCluster) -> str:
        return getattr(obj, "platforms_spanned", str(obj.platform_count))

    @admin.display(description="risk", ordering="risk")
    def risk_score(self, obj: ActorCluster) -> str:
        return format_html('<span class="risk risk-{}">{}</span>', risk_band(obj.risk), obj.risk)

    @admin.display(description="last change", ordering="changed_at")
    def last_change(self, obj: ActorCluster) -> str:
        return f"{obj.changed_at:%Y-%m-%d %H:%M}"

    @admin.display(description="status", ordering="status")
    def status_label(self, obj: ActorCluster) -> str:
        return format_html('<span class="status status-{}">{}</span>', obj.status, obj.get_status_display())

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = {"title": "Actor clusters", "subtitle": "Cross-platform first, then highest risk"}
        return super().changelist_view(request, {**title, **(extra_context or {})})

    # --- search

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("ac_"):
            return queryset.filter(ref=term), False
        sellers = Seller.objects.filter(seller_ref=term)
        scope = scope_of(request.user)
        if scope.platform_id is not None:  # never an oracle for other platforms' seller references
            sellers = sellers.filter(platform_id=scope.platform_id)
        by_seller = Exists(ClusterMember.objects.filter(cluster=OuterRef("pk"), seller__in=sellers))
        number = term.removeprefix("#")
        if scope.everything and CLUSTER_ID.fullmatch(number):  # ids are for exchange analysts only
            return queryset.filter(Q(pk=int(number)) | by_seller), False
        return queryset.filter(by_seller), False

    def hash_search_context(self, request: HttpRequest) -> dict[str, Any]:
        return {
            **super().hash_search_context(request),
            "hash_search_metered": scope_of(request.user).is_partner,
        }

    def hash_search_view(self, request: HttpRequest) -> HttpResponse:
        """Clusters (in the viewer's scope) holding an indicator with this transport hash, of any kind.

        Posted, never in a URL; answered here, never by a redirect. Audited with the number of matches; a
        partner analyst's search is charged to their platform's daily analyst quota, like an API lookup."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        scope = scope_of(request.user)
        form = HashSearchForm(request.POST)
        if not form.is_valid():
            return self._hash_search_page(request, {"errors": form.errors["transport_hash"]}, status=400)
        if scope.is_partner:
            try:
                charge_platform_quota(cast(int, scope.platform_id), 1)
            except QuotaExceeded as exc:
                AuditEntry.objects.record(
                    "admin_hash_search_refused",
                    request.user.get_username(),
                    scope.platform_id,
                    quota=exc.quota,
                )
                return self._quota_reached(request, exc, self._hash_search_page)
        indicators = Indicator.objects.filter(token__in=tokens_for(form.cleaned_data["transport_hash"]))
        holding = ClusterMember.objects.filter(
            cluster=OuterRef("pk"), seller__sightings__indicator__in=indicators
        )
        found = self.get_queryset(request).filter(Exists(holding))
        clusters = list(found[:HASH_SEARCH_LIMIT])
        matches = len(clusters) if len(clusters) < HASH_SEARCH_LIMIT else found.count()
        # Like an API lookup, a search by hash is audit-logged: the number of matches, never the hash.
        AuditEntry.objects.record(
            "admin_hash_search", request.user.get_username(), scope.platform_id, matches=matches
        )
        describe_platforms(clusters, scope.platform_id)
        rows = [(cluster, cluster_url(cluster, scope)) for cluster in clusters]
        return self._hash_search_page(request, {"rows": rows, "matches": matches, "searched": True})

    def _hash_search_page(
        self, request: HttpRequest, context: dict[str, Any], status: int = 200
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            **self.hash_search_context(request),
            "opts": self.opts,
            "title": "Clusters by transport hash",
            "is_exchange_analyst": scope_of(request.user).everything,
            "limit": HASH_SEARCH_LIMIT,
            **context,
        }
        return TemplateResponse(request, "admin/graph/actorcluster/hash_search.html", context, status=status)

    def _quota_reached(self, request: HttpRequest, exc: QuotaExceeded, page: Any) -> HttpResponse:
        response: HttpResponse = page(request, {"quota": exc}, status=429)
        response["Retry-After"] = str(max(1, int((exc.resets_at - timezone.now()).total_seconds())))
        return response

    # --- the cluster page

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        cluster = self.get_object(request, unquote(object_id))  # 404 outside the viewer's scope
        scope = scope_of(request.user)
        if request.method == "GET" and scope.is_partner:
            # The page tells a partner how many accounts other platforms hold: metered like a lookup.
            try:
                charge_platform_quota(cast(int, scope.platform_id), 1)
            except QuotaExceeded as exc:
                return self._quota_reached(request, exc, self._quota_page)
        explanation = explain(cluster, scope)
        evidence_context = self._evidence_context(request, explanation)
        context = {
            **(extra_context or {}),
            **evidence_context,
            "explanation": explanation,
            "picture": render(explanation),
            "graph": network(
                explanation,
                evidence_context["pair"],
                evidence_context["chain"],
                chosen="a" in request.GET or "b" in request.GET,
            ),
            "risk_parts": [
                (name, cluster.risk_parts.get(name, 0), maximum, text) for name, maximum, text in risk.PARTS
            ],
            "risk_band": risk_band(cluster.risk),
            "events": self._events(cluster, scope.everything),
            **self._opinions(cluster, scope),
            "timeline": cluster_timeline(explanation),
            "is_exchange_analyst": scope.everything,
            "referral_url": reverse(
                "admin:graph_actorcluster_referral", args=[cluster.pk if scope.everything else cluster.ref]
            ),
            "pending_approval": (
                Approval.objects.pending().filter(cluster=cluster).first() if scope.everything else None
            ),
            **(self._advisory_context(cluster) if scope.everything else {}),
            "title": f"Cluster #{cluster.pk}" if scope.everything else f"Cluster {cluster.ref}",
            "subtitle": cluster.ref if scope.everything else None,
        }
        if request.method == "GET":
            AuditEntry.objects.record(
                "cluster_viewed", request.user.get_username(), scope.platform_id, "cluster", str(cluster.pk)
            )
        return super().change_view(request, object_id, form_url, context)

    def referral_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A law-enforcement referral package of the cluster as the viewer's page shows it: a ZIP download
        (graph/referral.py). Posted from the cluster page, never a GET (making one is audited and, for a
        partner analyst, metered like opening the page); another platform's cluster is a 404."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        cluster = self.get_object(request, unquote(object_id))  # 404 outside the viewer's scope
        scope = scope_of(request.user)
        if scope.is_partner:
            try:
                charge_platform_quota(cast(int, scope.platform_id), 1)
            except QuotaExceeded as exc:
                return self._quota_reached(request, exc, self._quota_page)
        username = request.user.get_username()
        package = referral_package(cluster, scope, username)
        # The package's hash lets its recipient be shown the very file this entry records; no identifiers.
        AuditEntry.objects.record(
            "referral_package",
            username,
            scope.platform_id,
            "cluster",
            str(cluster.pk),
            sha256=package.sha256,
            view=package.view,
        )
        response = HttpResponse(package.content, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{package.filename}"'
        response["Cache-Control"] = "no-store"
        return response

    # --- advisories

    def _advisory_context(self, cluster: ActorCluster) -> dict[str, Any]:
        return {
            "advisory_url": reverse("admin:graph_actorcluster_advisory", args=[cluster.pk]),
            "advisory_error": cluster.publication_error(),
        }

    def advisory_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Publish the cluster as an exchange-wide advisory, or withdraw it (`advisory=publish|withdraw`,
        posted from the cluster page). Exchange analysts only: anyone else gets a 403 before any cluster is
        looked up, so the answer says nothing about which clusters exist."""
        if not self.has_publish_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        cluster = self.get_object(request, unquote(object_id))
        decision = request.POST.get("advisory", "")
        if decision not in {"publish", "withdraw"}:
            return HttpResponseBadRequest("advisory must be 'publish' or 'withdraw'.")
        self._decide_advisories(request, [cluster], decision)
        return HttpResponseRedirect(reverse("admin:graph_actorcluster_change", args=[cluster.pk]))

    @admin.action(
        description="Publish as advisories (confirmed cross-platform clusters)", permissions=["publish"]
    )
    def publish_advisories(self, request: HttpRequest, queryset: QuerySet[ActorCluster]) -> None:
        self._decide_advisories(request, list(queryset), "publish")

    @admin.action(description="Withdraw from the advisories", permissions=["publish"])
    def withdraw_advisories(self, request: HttpRequest, queryset: QuerySet[ActorCluster]) -> None:
        self._decide_advisories(request, list(queryset), "withdraw")

    def _decide_advisories(self, request: HttpRequest, clusters: list[ActorCluster], decision: str) -> None:
        """Each cluster through its own audited action; one message for what changed, one per refusal."""
        actor = request.user.get_username()
        changed = refused = 0
        for cluster in clusters:
            try:
                if decision == "publish":
                    changed += do_publish_advisory(cluster, actor)
                else:
                    changed += do_withdraw_advisory(cluster, actor)
            except AdvisoryError as exc:
                refused += 1
                self.message_user(request, f"Cluster #{cluster.pk} not published: {exc}", messages.ERROR)
        if changed:
            done = "Published" if decision == "publish" else "Withdrew"
            self.message_user(request, f"{done} {changed} advisory(ies).", messages.SUCCESS)
        if unchanged := len(clusters) - changed - refused:
            state = "published already" if decision == "publish" else "not published"
            self.message_user(request, f"{unchanged} cluster(s) were {state}: nothing to do.", messages.INFO)

    def _quota_page(self, request: HttpRequest, context: dict[str, Any], status: int) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Quota reached",
            **context,
        }
        return TemplateResponse(
            request, "admin/graph/actorcluster/quota_reached.html", context, status=status
        )

    def _evidence_context(self, request: HttpRequest, explanation: Explanation) -> dict[str, Any]:
        """The chain between the two members chosen on the page (?a=&b= are positions on the page, so that
        no seller id of another platform ever appears in a partner's URL), or a sensible default pair."""
        pair = explanation.default_pair()
        error = ""
        if "a" in request.GET or "b" in request.GET:
            try:
                a, b = explanation.at(int(request.GET["a"])), explanation.at(int(request.GET["b"]))
            except (KeyError, ValueError):
                a = b = None
            pair = (a, b) if a is not None and b is not None else None
            if pair is None:
                error = "Choose two members of this cluster."
        chain: list[Any] = []
        if pair is not None:
            if pair[0].seller_id == pair[1].seller_id:
                error = "Choose two different sellers."
            else:
                try:
                    chain = explanation.chain(pair[0].seller_id, pair[1].seller_id)
                except evidence.NotLinked:
                    error = (
                        "These two sellers are not linked in this cluster (one may be retracted or expired)."
                    )
        return {"pair": pair, "chain": chain, "chain_error": error}

    def _opinions(self, cluster: ActorCluster, scope: Scope) -> dict[str, Any]:
        """How many platforms gave each opinion (everyone), and the opinions themselves: all of them with who
        gave them for exchange analysts, the viewer's own platform's for a partner analyst."""
        counts = cluster.opinions.platform_counts()
        shown = cluster.opinions.select_related("platform", "seller", "reviewed_by").order_by(
            "-created_at", "-id"
        )
        if not scope.everything:
            platform_id = scope.platform_id
            shown = shown.filter(platform_id=platform_id) if platform_id is not None else shown.none()
        return {
            "opinion_counts": [(OpinionKind(kind).label, n) for kind, n in counts.items()],
            "opinion_rows": list(shown[:200]),
        }

    def _events(self, cluster: ActorCluster, everything: bool) -> list[dict[str, Any]]:
        rows = []
        for event in cluster.events.order_by("-created_at", "-id")[:200]:
            details = dict(event.details or {})
            rows.append(
                {
                    "event": event,
                    "change": details.get("from") and f"{details['from']} → {details.get('to')}",
                    # Other clusters' ids mean nothing to a partner and may not be theirs to open.
                    "related": event.related if everything else [],
                    "related_count": len(event.related or []),
                    # Who among the operator's staff acted is theirs to know, as the assignee is.
                    "actor": event.actor if everything or event.actor == "system" else "an exchange analyst",
                }
            )
        return rows

    # --- the workflow

    def save_model(
        self, request: HttpRequest, obj: ActorCluster, form: forms.ModelForm, change: bool
    ) -> None:
        """Assignee, notes and the workflow's plain steps change at once; confirming or dismissing asks for a
        second exchange analyst's approval first (graph.actions, four-eyes review) and changes nothing yet."""
        changes = {name: form.cleaned_data[name] for name in CLUSTER_WORK_FIELDS if name in form.changed_data}
        if not changes:
            return
        try:
            if changes.get("status") in FOUR_EYES_STATUSES:
                status = changes.pop("status")
                approval = do_request_cluster_status(obj, request.user, status)  # type: ignore[arg-type]
                obj.__dict__["_approval"] = approval
                obj.refresh_from_db(fields=["status"])
            if changes:
                do_update_cluster(obj, request.user.get_username(), changes)
        except (WorkflowError, ApprovalRefused) as exc:  # the status moved, or a change waits already
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)
            obj.__dict__["_refused"] = True

    def response_change(self, request: HttpRequest, obj: ActorCluster) -> HttpResponse:
        if obj.__dict__.pop("_refused", False):
            return HttpResponseRedirect(request.path)
        approval = obj.__dict__.pop("_approval", None)
        if approval is not None:
            self.message_user(
                request,
                f"“{approval.proposed}” waits for a second exchange analyst's approval (approval "
                f"{approval.pk}); nothing changes for partners until another analyst approves it.",
                messages.WARNING,
            )
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)
