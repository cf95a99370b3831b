"""Admin for partners' opinions: the false-positive review queue and the time to action per platform.
Imported from `graph/admin.py` to register it.

Exchange analysts see every platform's opinions and review pending false positives (accept: the seller stays
out of the cluster for its platform; reject: it is shown again), each decision through
`graph.actions.do_review_false_positive` (audited). Partner analysts see their own platform's opinions only
(`OpinionQuerySet.of_partner`), and the time to action of their own platform only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from accounts.admin import ScopedModelAdmin
from accounts.models import AuditEntry, Platform
from accounts.roles import is_exchange_analyst
from accounts.scoping import scope_of
from graph.actions import do_review_false_positive
from graph.models import Opinion, Review
from graph.opinions import Distribution, time_to_action


class ReviewFilter(admin.SimpleListFilter):
    """The review queue is this list filtered on pending false positives."""

    title = "false-positive review"
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, label in Review.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(review=value) if value in Review.values else queryset


@admin.register(Opinion)
class OpinionAdmin(ScopedModelAdmin):
    list_display = ("created_at", "cluster_link", "platform", "kind", "seller_ref", "review", "actor")
    list_select_related = ("platform", "cluster", "seller")
    ordering = ("-created_at", "-id")
    fields = (
        "cluster_link",
        "platform",
        "kind",
        "seller_ref",
        "note",
        "acted_at",
        "first_signal_at",
        "via",
        "actor",
        "created_at",
        "review",
        "reviewed_by",
        "reviewed_at",
    )
    readonly_fields = fields
    actions = ("accept", "reject")
    change_list_template = "admin/graph/opinion/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        page = path(
            "time-to-action/",
            self.admin_site.admin_view(self.time_to_action_view),
            name="graph_opinion_time_to_action",
        )
        return [page, *super().get_urls()]  # before `<path:object_id>/`, which would take it

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Which of the operator's analysts decided is theirs to know (as on the cluster page).
        if scope_of(request.user).everything:
            return self.fields
        return [name for name in self.fields if name != "reviewed_by"]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        filters: list[Any] = [ReviewFilter, "kind"]
        if scope_of(request.user).everything:
            filters.append("platform")
        return filters

    def get_list_display(self, request: HttpRequest) -> Any:
        if scope_of(request.user).everything:
            return self.list_display
        return [name for name in self.list_display if name != "platform"]  # always their own

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # opinions come from partners, through the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # nothing to edit; the review is the actions below

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_review_permission(self, request: HttpRequest) -> bool:
        return is_exchange_analyst(request.user) and request.user.has_perm("graph.change_opinion")

    # --- columns

    @admin.display(description="cluster", ordering="cluster")
    def cluster_link(self, obj: Opinion) -> str:
        # By reference, which every viewer in scope may use (a partner analyst knows no cluster ids).
        url = reverse("admin:graph_actorcluster_change", args=[obj.cluster.ref])
        return format_html('<a href="{}">{}</a>', url, obj.cluster.ref)

    @admin.display(description="seller")
    def seller_ref(self, obj: Opinion) -> str:
        return obj.seller.seller_ref if obj.seller else "–"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        pending = Opinion.objects.visible_to(request.user).pending_review().count()
        context = {
            "title": "Opinions on clusters",
            "subtitle": f"{pending} false positive(s) pending review" if pending else None,
            "pending_url": f"{reverse('admin:graph_opinion_changelist')}?review={Review.PENDING}",
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    # --- the review

    @admin.action(
        description="Accept the false positive: the seller stays out of the cluster", permissions=["review"]
    )
    def accept(self, request: HttpRequest, queryset: QuerySet[Opinion]) -> None:
        done = sum(do_review_false_positive(o, request.user, accept=True) for o in queryset)  # type: ignore[arg-type]
        self.message_user(
            request, f"{done} false positive(s) accepted; the sellers stay out.", messages.SUCCESS
        )

    @admin.action(
        description="Reject the false positive: show the seller in the cluster again", permissions=["review"]
    )
    def reject(self, request: HttpRequest, queryset: QuerySet[Opinion]) -> None:
        done = sum(do_review_false_positive(o, request.user, accept=False) for o in queryset)  # type: ignore[arg-type]
        self.message_user(
            request, f"{done} false positive(s) rejected; the sellers are shown again.", messages.SUCCESS
        )

    # --- time to action

    def time_to_action_view(self, request: HttpRequest) -> HttpResponse:
        """Per platform: cases, median and 90th percentile of the time from the first signal to the action, and
        the share within 24 hours. Exchange analysts see every platform; a partner analyst their own only."""
        scope = scope_of(request.user)
        if scope.nothing or not self.has_view_permission(request):
            raise PermissionDenied
        by_platform = time_to_action(platform_id=scope.platform_id)
        platforms = Platform.objects.visible_to(request.user).order_by("name")
        rows: list[tuple[Platform, Distribution]] = [
            (platform, by_platform.get(platform.pk, Distribution(0, None, None, None)))
            for platform in platforms
        ]
        AuditEntry.objects.record(
            "time_to_action_viewed", request.user.get_username(), scope.platform_id, platforms=len(rows)
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Time to action",
            "rows": rows,
            "is_exchange_analyst": scope.everything,
        }
        return TemplateResponse(request, "admin/graph/opinion/time_to_action.html", context)
