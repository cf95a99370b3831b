"""Admin for four-eyes review: the decisions that change what partners see, waiting for a second exchange analyst.

A cluster confirmed as one actor or dismissed, and an indicator forced back into linking, are asked for on the
cluster and indicator pages (`graph.actions.do_request_*`) and land here as pending approvals, with the first
analyst; another exchange analyst approves or rejects them with the actions below (`do_approve`, `do_reject`),
and becomes the second analyst. The analyst who asked cannot approve (the action says so) but may withdraw.
Imported from `graph/admin.py` to register it.

Exchange analysts only: partner analysts get a 403 for the list (no permission) and a 404 for every approval's
page (the queryset's partner share is empty, `accounts.scoping`).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin import NamedDefaultFilter, ReadOnlyMixin, ScopedModelAdmin
from accounts.roles import is_exchange_analyst
from graph.actions import ApprovalRefused, WorkflowError, do_approve, do_reject
from graph.models import Approval, ApprovalKind, ApprovalState


class ApprovalStateFilter(NamedDefaultFilter):
    """Pending approvals by default: they are the ones waiting for someone."""

    title = "state"
    parameter_name = "state"
    default_label = "Pending"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        decided = [(value, label) for value, label in ApprovalState.choices if value != ApprovalState.PENDING]
        return [*decided, ("all", "All")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "all":
            return queryset
        if self.value() in ApprovalState.values:
            return queryset.filter(state=self.value())
        return queryset.filter(state=ApprovalState.PENDING)


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyMixin, ScopedModelAdmin):
    list_display = ("approval", "change", "asked", "state", "decided")
    list_display_links = ("approval",)
    list_filter = (ApprovalStateFilter, "kind")
    ordering = ("-requested_at", "-id")
    fields = (
        "kind",
        "subject_link",
        "change",
        "reason",
        "state",
        "requested_by_name",
        "requested_at",
        "decided_by_name",
        "decided_at",
    )
    readonly_fields = fields
    actions = ("approve", "reject")

    @admin.display(description="approval", ordering="id")
    def approval(self, obj: Approval) -> str:
        return f"#{obj.pk}"

    @admin.display(description="about")
    def subject_link(self, obj: Approval) -> str:
        if obj.kind == ApprovalKind.CLUSTER_STATUS:
            url = reverse("admin:graph_actorcluster_change", args=[obj.cluster_id])
        else:
            url = reverse("admin:exchange_indicator_change", args=[obj.indicator_id])
        return format_html('<a href="{}">{}</a>', url, obj.subject)

    @admin.display(description="change")
    def change(self, obj: Approval) -> str:
        what = "status" if obj.kind == ApprovalKind.CLUSTER_STATUS else "linking"
        return format_html("{} {}: {} → {}", self.subject_link(obj), what, obj.current, obj.proposed)

    @admin.display(description="first analyst", ordering="requested_at")
    def asked(self, obj: Approval) -> str:
        return format_html("{}<br>{}", obj.requested_by_name, f"{obj.requested_at:%Y-%m-%d %H:%M}")

    @admin.display(description="second analyst", ordering="decided_at")
    def decided(self, obj: Approval) -> str:
        if obj.decided_at is None:
            return "–"
        return format_html("{}<br>{}", obj.decided_by_name, f"{obj.decided_at:%Y-%m-%d %H:%M}")

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return is_exchange_analyst(request.user) and request.user.has_perm("graph.change_approval")

    @admin.action(description="Approve (as the second analyst): make the change", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        done = 0
        for approval in queryset.order_by("id"):
            try:
                do_approve(approval, request.user)  # type: ignore[arg-type]
            except (ApprovalRefused, WorkflowError) as exc:
                self.message_user(request, f"Approval {approval.pk} not approved: {exc}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} change(s) approved and made.", messages.SUCCESS)

    @admin.action(description="Reject (or withdraw your own): change nothing", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        done = 0
        for approval in queryset.order_by("id"):
            try:
                do_reject(approval, request.user)  # type: ignore[arg-type]
            except ApprovalRefused as exc:
                self.message_user(request, f"Approval {approval.pk} not rejected: {exc}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(
                request, f"{done} change(s) rejected or withdrawn; nothing changed.", messages.SUCCESS
            )
