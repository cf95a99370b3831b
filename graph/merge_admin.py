"""Admin for held merges: exchange analysts see what one platform's fresh sellers alone would join, and approve
or reject it. Imported from `graph/admin.py` to register it.

Partner analysts get nothing: a 403 for the list (as for any admin page without a permission) and a 404 for
every held merge's own pages. A held merge names other platforms' clusters, and even its existence would tell
them that someone tried to join their clusters.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from accounts.roles import is_exchange_analyst
from graph.actions import do_approve_merge, do_reject_merge
from graph.models import PendingMerge


@admin.register(PendingMerge)
class PendingMergeAdmin(admin.ModelAdmin):
    list_display = ("__str__", "state", "platform", "held", "would_join", "created_at", "decided_by")
    list_filter = ("state",)
    list_select_related = ("platform", "decided_by")
    ordering = ("-created_at", "-id")
    fields = (
        "platform",
        "state",
        "held",
        "would_join",
        "created_at",
        "updated_at",
        "decided_at",
        "decided_by",
    )
    readonly_fields = fields
    actions = ("approve", "reject")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PendingMerge]:
        return (
            super()
            .get_queryset(request)
            .annotate(held_count=Count("memberships", filter=Q(memberships__held=True)))
        )

    @admin.display(description="held sellers")
    def held(self, obj: PendingMerge) -> int:
        return getattr(obj, "held_count", None) or len(obj.held_seller_ids())

    @admin.display(description="clusters it would join")
    def would_join(self, obj: PendingMerge) -> str:
        clusters = obj.clusters()
        return format_html_join(
            ", ",
            '<a href="{}">#{} ({} sellers, {} platforms)</a>',
            (
                (reverse("admin:graph_actorcluster_change", args=[c.pk]), c.pk, c.size, c.platform_count)
                for c in clusters
            ),
        ) or format_html('<span class="quiet">{}</span>', "none live")

    # Exchange analysts only. The list and add pages answer 403 like every admin page without a permission;
    # a held merge's own pages answer 404 to everyone else (the object does not exist for them).
    def _exchange_only(self, request: HttpRequest) -> None:
        if not is_exchange_analyst(request.user):
            raise Http404("No such page.")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        self._exchange_only(request)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._exchange_only(request)
        return super().history_view(request, object_id, extra_context)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._exchange_only(request)
        return super().delete_view(request, object_id, extra_context)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_exchange_analyst(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: PendingMerge | None = None) -> bool:
        return is_exchange_analyst(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PendingMerge | None = None) -> bool:
        return False  # nothing to edit; decisions are the actions below

    def has_delete_permission(self, request: HttpRequest, obj: PendingMerge | None = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return is_exchange_analyst(request.user) and request.user.has_perm("graph.change_pendingmerge")

    @admin.action(description="Approve: let the merge happen", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[PendingMerge]) -> None:
        done = sum(do_approve_merge(merge, request.user) for merge in queryset)  # type: ignore[arg-type]
        self.message_user(
            request, f"{done} merge(s) approved; the clusters are being joined.", messages.SUCCESS
        )

    @admin.action(description="Reject: keep the clusters apart", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[PendingMerge]) -> None:
        done = sum(do_reject_merge(merge, request.user) for merge in queryset)  # type: ignore[arg-type]
        self.message_user(request, f"{done} merge(s) rejected; their sellers stay held.", messages.SUCCESS)
