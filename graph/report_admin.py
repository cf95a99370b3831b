"""Admin for the report outbox: read-only, with a "retry now" action for failed or waiting emails.

Import this module from `graph/admin.py` to register it. Only exchange analysts (and superusers) see it:
a row's body is one platform's report, which no other platform's analyst may read.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.roles import is_exchange_analyst
from graph import outbox
from graph.models import ReportDelivery


@admin.register(ReportDelivery)
class ReportDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "recipient",
        "kind",
        "platform",
        "period_end",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error_short",
    )
    list_filter = ("status", "kind", "platform")
    search_fields = ("recipient", "message_id", "subject")
    date_hierarchy = "period_end"
    list_select_related = ("platform",)
    readonly_fields = [f.name for f in ReportDelivery._meta.fields]
    actions = ("retry_now",)

    @admin.display(description="last error")
    def last_error_short(self, obj: ReportDelivery) -> str:
        return obj.last_error[:80]

    def has_view_permission(self, request: HttpRequest, obj: ReportDelivery | None = None) -> bool:
        return is_exchange_analyst(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ReportDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ReportDelivery | None = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return is_exchange_analyst(request.user) and request.user.has_perm("graph.change_reportdelivery")

    @admin.action(description="Retry now (failed or waiting emails)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[ReportDelivery]) -> None:
        count = outbox.retry_now(queryset)
        self.message_user(request, f"{count} email(s) will be sent at the next run.", messages.SUCCESS)
