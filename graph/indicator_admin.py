"""Admin for indicators: who holds one, whether it links (hub suppression), and its linking override.

`exchange.Indicator` is exchange's model, administered here because everything its page shows and changes
is linking, which is graph's: the hub rule's verdict, the clusters it links, and the override (mark common /
force include), which goes through `graph.actions.do_set_indicator_linking` with a reason and recomputes the
clusters it touches. Forcing an indicator in waits for a second exchange analyst's approval (four-eyes review,
`graph.actions.do_request_indicator_linking`). Indicators are keyed tokens shared across platforms: exchange analysts only
(`accounts.scoping`); they search them by transport hash with a posted form, never a URL.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.admin import DurableSaveAdmin, NamedDefaultFilter, ScopedModelAdmin
from accounts.models import AuditEntry
from accounts.roles import is_exchange_analyst
from accounts.scoping import scope_of
from exchange import similarity
from exchange.contract import FUZZY_WIRE_KINDS
from exchange.hash_search import HASH_SEARCH_LIMIT, HashSearchAdmin, HashSearchForm, tokens_for
from exchange.models import Indicator, Linking, Seller
from exchange.normalization import SIMILARITY_KINDS
from graph import tuning
from graph.actions import (
    ApprovalRefused,
    ApprovalRequired,
    do_request_indicator_linking,
    do_set_indicator_linking,
)
from graph.clustering import hub_rule, strengths
from graph.models import ActorCluster, Approval


class SharedFilter(NamedDefaultFilter):
    """Shared indicators by default: most indicators are held by one seller and link nothing, so a list that
    opened on all of them buried the few that matter. "All" and "Held by one seller" are explicit choices."""

    title = "shared"
    parameter_name = "shared"
    default_label = "Held by 2+ sellers"
    SHARED = "yes"  # also the default; the parameter stays accepted for links made before it was

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Held by one seller"), ("all", "All")]

    def shared_only(self) -> bool:
        return self.value() in (None, self.SHARED)

    def default_selected(self) -> bool:
        return self.shared_only()

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.shared_only():
            return queryset.filter(holders__gte=2)
        if self.value() == "no":
            return queryset.filter(holders__lt=2)
        return queryset


class LinkingForm(forms.ModelForm):
    """The one thing an analyst changes on an indicator: whether it may link, and why."""

    class Meta:
        model = Indicator
        fields = ("linking", "linking_reason")
        # The admin's own radio widget (`IndicatorAdmin.radio_fields`): a plain RadioSelect lacks its
        # "radiolist" class, so the aligned form's 160px label rule wrapped each label under its button.
        widgets = {"linking_reason": forms.Textarea(attrs={"rows": 3, "cols": 70})}
        labels = {"linking_reason": "Reason"}
        help_texts = {
            "linking_reason": "Required when you change how the indicator links. Kept with it.",
            "linking": "Forcing an indicator in waits for a second exchange analyst's approval (Approvals).",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "linking" in self.changed_data and not (cleaned.get("linking_reason") or "").strip():
            self.add_error("linking_reason", "Say why: the next analyst will want to know.")
        return cleaned


class ThresholdForm(forms.Form):
    kind = forms.ChoiceField(choices=[(kind, kind) for kind in SIMILARITY_KINDS])
    threshold = forms.FloatField()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, value = data.get("kind"), data.get("threshold")
        if kind is None or value is None:
            return data
        low, high = THRESHOLD_RANGES[kind]
        if not low <= value <= high:
            self.add_error("threshold", f"{kind} thresholds go from {low:g} to {high:g}")
        elif kind == "image" and value != int(value):
            self.add_error("threshold", "an image threshold is a whole number of bits")
        return data


# What each kind's threshold may be set to: the ranges the settings accept (exchange/settings.py).
THRESHOLD_RANGES = {
    "image": (0.0, 63.0),
    "document": (0.7, 1.0),
    **dict.fromkeys(FUZZY_WIRE_KINDS, (0.6, 1.0)),
}


@admin.register(Indicator)
class IndicatorAdmin(DurableSaveAdmin, HashSearchAdmin, ScopedModelAdmin):
    form = LinkingForm
    radio_fields = {"linking": admin.VERTICAL}
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
        (
            None,
            {
                "fields": (
                    "kind",
                    "strength",
                    "token_display",
                    "first_seen",
                    "holding",
                    "clusters",
                    "near_duplicates",
                )
            },
        ),
        (
            "Linking",
            {
                "fields": (
                    "linking",
                    "linking_reason",
                    "linking_changed_by",
                    "linking_changed_at",
                    "pending_approval",
                )
            },
        ),
    )
    readonly_fields = (
        "kind",
        "strength",
        "token_display",
        "first_seen",
        "holding",
        "clusters",
        "near_duplicates",
        "linking_changed_by",
        "linking_changed_at",
        "pending_approval",
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

    def get_urls(self) -> list[URLPattern]:
        thresholds = path(
            "match-thresholds/",
            self.admin_site.admin_view(self.thresholds_view),
            name="exchange_indicator_match_thresholds",
        )
        return [thresholds, *super().get_urls()]  # before `<path:object_id>/`, which would take it

    def thresholds_view(self, request: HttpRequest) -> HttpResponse:
        """Each similarity kind's match threshold; an exchange analyst previews a new one (a dry run: what
        would change in groups, matched pairs and clusters) and then applies it (graph.tuning). Partner
        analysts have no indicator admin."""
        if not self.has_view_permission(request) or not is_exchange_analyst(request.user):
            raise PermissionDenied
        status, change, error = 200, None, None
        form = ThresholdForm(request.POST or None)
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            if form.is_valid():
                kind, value = form.cleaned_data["kind"], form.cleaned_data["threshold"]
                if "apply" in request.POST:
                    change = tuning.apply(kind, value, cast(AbstractBaseUser, request.user))
                    messages.success(
                        request,
                        f"{kind}: threshold {change.current:g} -> {value:g}; {change.groups_before} groups became "
                        f"{change.groups_after}; the clusters are being recomputed.",
                    )
                    return HttpResponseRedirect(request.path)
                change = tuning.preview(kind, value)
                AuditEntry.objects.record(
                    "match_threshold_previewed",
                    request.user.get_username(),
                    None,
                    "match_threshold",
                    kind,
                    proposed=value,
                    pairs_gained=change.pairs_gained,
                    pairs_lost=change.pairs_lost,
                )
            else:
                status, error = (
                    400,
                    "; ".join(f"{f}: {' '.join(map(str, e))}" for f, e in form.errors.items()),
                )
        current = similarity.thresholds()
        rows = [(kind, current[kind], similarity.configured_threshold(kind)) for kind in SIMILARITY_KINDS]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Match thresholds of the similarity kinds",
            "rows": rows,
            "form": form,
            "change": change,
            "error": error,
        }
        return TemplateResponse(
            request, "admin/exchange/indicator/match_thresholds.html", context, status=status
        )

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
        return strengths()[obj.kind]

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

    @admin.display(description="near-duplicate group")
    def near_duplicates(self, obj: Indicator) -> str:
        """For a group of a similarity kind: how many distinct items and sellers, and how far apart its items
        are (never the items themselves)."""
        if obj.kind not in SIMILARITY_KINDS:
            return "–"
        group = similarity.describe_group(obj)
        if not group.items:
            return "no item left in this group"
        if group.direct_match:
            return (
                f"a direct match between two {obj.kind} items of different groups, reported by {group.sellers} "
                f"seller(s): {similarity.describe_direct(obj.kind, group.spread or 0.0)}."
            )
        if group.spread is None:
            spread = "one item"
        else:
            spread = "its least near two: " + similarity.matcher(obj.kind).describe(
                group.spread, similarity.threshold(obj.kind)
            )
        return (
            f"{group.items} distinct {obj.kind} item(s) reported by {group.sellers} seller(s); {spread}. A group "
            "also holds items linked through others: mark it common if it is a stock or brand shot."
        )

    @admin.display(description="waiting for approval")
    def pending_approval(self, obj: Indicator) -> str:
        approval = Approval.objects.pending().filter(indicator=obj).first()
        if approval is None:
            return "–"
        return format_html(
            '{} → {}, asked by {} (<a href="{}">approval {}</a>)',
            approval.current,
            approval.proposed,
            approval.requested_by_name,
            reverse("admin:graph_approval_change", args=[approval.pk]),
            approval.pk,
        )

    def save_model(self, request: HttpRequest, obj: Indicator, form: forms.ModelForm, change: bool) -> None:
        if "linking" not in form.changed_data and "linking_reason" not in form.changed_data:
            return
        linking, reason = form.cleaned_data["linking"], form.cleaned_data["linking_reason"]
        try:
            do_set_indicator_linking(obj, request.user.get_username(), linking, reason)
        except ApprovalRequired:
            try:
                approval = do_request_indicator_linking(obj, request.user, linking, reason)  # type: ignore[arg-type]
            except ApprovalRefused as exc:
                self.message_user(request, f"Not saved: {exc}", messages.ERROR)
                obj.__dict__["_refused"] = True
            else:
                obj.__dict__["_approval"] = approval
            obj.refresh_from_db(fields=["linking", "linking_reason"])

    def response_change(self, request: HttpRequest, obj: Indicator) -> HttpResponse:
        if obj.__dict__.pop("_refused", False):
            return HttpResponseRedirect(request.path)
        approval = obj.__dict__.pop("_approval", None)
        if approval is not None:
            self.message_user(
                request,
                f"Forcing the indicator in waits for a second exchange analyst's approval (approval "
                f"{approval.pk}); it links as before until another analyst approves it.",
                messages.WARNING,
            )
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)
