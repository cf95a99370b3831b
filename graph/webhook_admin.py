"""Admin for the webhook outbox: every event queued for a platform, its delivery status, attempts, the last
HTTP status and error. Read-only, with "Retry now" for exchange analysts.

Exchange analysts see every platform's events; a partner analyst sees only their own platform's (each event
holds only that platform's view), through `WebhookDeliveryQuerySet.of_partner`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.admin import ReadOnlyMixin, ScopedModelAdmin
from accounts.roles import is_exchange_analyst
from accounts.scoping import scope_of
from graph import outbox
from graph.models import WebhookDelivery


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, ScopedModelAdmin):
    list_display = (
        "created_at",
        "event_type",
        "platform",
        "cluster_ref",
        "status",
        "attempts",
        "response_status",
        "next_attempt_at",
        "sent_at",
        "last_error_short",
    )
    list_select_related = ("platform", "cluster")
    search_fields = ("event_id",)
    search_help_text = "An event id (evt_…), as the receiver logged it."
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    actions = ("retry_now",)
    fields = (
        "event_id",
        "event_type",
        "platform",
        "cluster_ref",
        "status",
        "attempts",
        "response_status",
        "next_attempt_at",
        "claimed_at",
        "sent_at",
        "last_error",
        "created_at",
        "cleared_at",
        "body_text",
    )
    readonly_fields = fields

    def get_list_filter(self, request: HttpRequest) -> Any:
        # A partner analyst's list holds only their platform: a platform filter would list every other name.
        if scope_of(request.user).is_partner:
            return ("status", "event_type")
        return ("status", "event_type", "platform")

    @admin.display(description="cluster")
    def cluster_ref(self, obj: WebhookDelivery) -> str:
        return obj.cluster.ref if obj.cluster else ""

    @admin.display(description="last error")
    def last_error_short(self, obj: WebhookDelivery) -> str:
        return obj.last_error[:80]

    @admin.display(description="body (as sent)")
    def body_text(self, obj: WebhookDelivery) -> str:
        if obj.cleared_at is not None:
            return f"(cleared by the retention purge on {obj.cleared_at:%Y-%m-%d}: it named the platform's sellers)"
        return format_html('<pre class="mono" style="white-space: pre-wrap">{}</pre>', obj.body)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return is_exchange_analyst(request.user) and request.user.has_perm("graph.change_webhookdelivery")

    @admin.action(description="Retry now (failed or waiting events)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = outbox.retry_now(queryset)
        self.message_user(request, f"{count} event(s) will be sent at the next run.", messages.SUCCESS)
