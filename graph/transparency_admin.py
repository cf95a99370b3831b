"""The transparency report in the admin: `/admin/graph/actorcluster/transparency/?period=2026` (and `&format=csv`).

Exchange analysts see the consortium's figures and every platform's own; a partner analyst sees the
consortium's and their own platform's, never another's (which platforms are shown is `Platform`'s scoping,
`visible_to`). A bad period is a 400 naming the accepted forms. Every report shown or downloaded is audited.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from accounts.models import AuditEntry, Platform
from accounts.scoping import scope_of
from graph.transparency import ACCEPTED_PERIODS, PeriodError, parse_period, write_csv
from graph.transparency_data import build_report, scope_label

FORMATS = ("html", "csv")


def period_choices(now: datetime) -> list[str]:
    """Suggestions for the period field: this and last year, this year's quarters so far, recent months."""
    quarters = [f"{now.year}-Q{q}" for q in range(1, (now.month - 1) // 3 + 2)]
    months = []
    year, month = now.year, now.month
    for _ in range(3):
        months.append(f"{year}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return [str(now.year), str(now.year - 1), *reversed(quarters), *months]


class TransparencyReportAdmin(admin.ModelAdmin):
    """Adds the report's URL to the cluster admin (its changelist links to it)."""

    def get_urls(self) -> list[URLPattern]:
        report = path(
            "transparency/",
            self.admin_site.admin_view(self.transparency_view),
            name="graph_transparency_report",
        )
        return [report, *super().get_urls()]  # before `<path:object_id>/`, which would take it

    def transparency_view(self, request: HttpRequest) -> HttpResponse:
        scope = scope_of(request.user)
        if scope.nothing or not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        text = request.GET.get("period", "").strip() or str(now.year)
        output = request.GET.get("format", "html")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Transparency report",
            "period_text": text[:20],
            "period_choices": period_choices(now),
            "accepted": ACCEPTED_PERIODS,
        }
        template = "admin/graph/actorcluster/transparency.html"
        if output not in FORMATS:
            context["error"] = f"Unknown format {output[:20]!r}: give html or csv."
            return TemplateResponse(request, template, context, status=400)
        try:
            period = parse_period(text, now)
        except PeriodError as error:
            context["error"] = str(error)
            return TemplateResponse(request, template, context, status=400)
        shown = list(Platform.objects.visible_to(request.user).order_by("name"))
        report = build_report(period, shown)
        AuditEntry.objects.record(
            "transparency_report",
            request.user.get_username(),
            scope.platform_id,
            period=period.label,
            scope=scope_label(shown, scope.everything),
            format=output,
        )
        if output == "csv":
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="transparency-{period.label}.csv"'
            write_csv(report, response)
            return response
        return TemplateResponse(request, template, {**context, "report": report, "period_text": period.label})
