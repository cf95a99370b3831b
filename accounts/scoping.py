"""What an investigator may see: the one place where the admin's querysets are scoped.

Deny by default. Exchange analysts (and superusers) see everything; a partner analyst sees only what concerns
their platform; anyone else (a staff account without an analyst profile, an inactive user, an anonymous
visitor) sees nothing, whatever Django permissions they carry. Every admin `get_queryset()` goes through
these functions, so a partner analyst who types another platform's URL gets a 404, not a page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.filters import FieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accounts.models import ApiKey, Platform
from exchange.models import AuditEntry, Indicator, Seller, Submission
from graph.models import ActorCluster

User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True, slots=True)
class Scope:
    """Everything (`platform_id` None and `everything` True), one platform, or nothing."""

    everything: bool
    platform_id: int | None

    @property
    def nothing(self) -> bool:
        return not self.everything and self.platform_id is None

    @property
    def is_partner(self) -> bool:
        return not self.everything and self.platform_id is not None


NOTHING = Scope(everything=False, platform_id=None)
EVERYTHING = Scope(everything=True, platform_id=None)


def scope_of(user: User) -> Scope:
    if not user.is_authenticated or not getattr(user, "is_active", False):
        return NOTHING
    if getattr(user, "is_superuser", False):
        return EVERYTHING
    if not getattr(user, "is_staff", False):
        return NOTHING
    profile = getattr(user, "analyst", None)
    if profile is None:
        return NOTHING
    if profile.platform_id is None:
        return EVERYTHING
    return Scope(everything=False, platform_id=profile.platform_id)


def clusters_for(user: User) -> QuerySet[ActorCluster]:
    """Clusters containing at least one of the partner's sellers (dissolved ones included: history)."""
    scope = scope_of(user)
    if scope.everything:
        return ActorCluster.objects.all()
    if scope.platform_id is None:
        return ActorCluster.objects.none()
    return ActorCluster.objects.containing_platform(scope.platform_id)


def sellers_for(user: User) -> QuerySet[Seller]:
    """A partner's own sellers only: other platforms' members appear in clusters as counts, never as rows."""
    scope = scope_of(user)
    if scope.everything:
        return Seller.objects.all()
    if scope.platform_id is None:
        return Seller.objects.none()
    return Seller.objects.of_platform(scope.platform_id)


def indicators_for(user: User) -> QuerySet[Indicator]:
    """Indicators are keyed tokens shared across platforms: exchange analysts only."""
    return Indicator.objects.all() if scope_of(user).everything else Indicator.objects.none()


def submissions_for(user: User) -> QuerySet[Submission]:
    scope = scope_of(user)
    if scope.everything:
        return Submission.objects.all()
    if scope.platform_id is None:
        return Submission.objects.none()
    return Submission.objects.filter(platform_id=scope.platform_id)


def audit_entries_for(user: User) -> QuerySet[AuditEntry]:
    scope = scope_of(user)
    if scope.everything:
        return AuditEntry.objects.all()
    if scope.platform_id is None:
        return AuditEntry.objects.none()
    return AuditEntry.objects.filter(platform_id=scope.platform_id)


def platforms_for(user: User) -> QuerySet[Platform]:
    scope = scope_of(user)
    if scope.everything:
        return Platform.objects.all()
    if scope.platform_id is None:
        return Platform.objects.none()
    return Platform.objects.filter(pk=scope.platform_id)


def api_keys_for(user: User) -> QuerySet[ApiKey]:
    """Keys are managed by the exchange's operators only (a partner analyst is an investigator, not an admin)."""
    return ApiKey.objects.all() if scope_of(user).everything else ApiKey.objects.none()


ORDER_PART = re.compile(r"-?[0-9]{1,3}")


class ScopedModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose rows come from one of the functions above (`scoped_queryset`).

    An object outside the viewer's scope does not exist for them: its change, history and delete pages answer
    404 (not the admin's default redirect, and not a 403 that would confirm the object exists).

    A partner analyst's changelist takes only the filters the page offers them and orders only by the columns
    it shows them: Django otherwise accepts any lookup on a local field (`?notes__startswith=a`), an oracle on
    whatever the page hides. Anything else is refused with a 400 (`DisallowedModelAdminLookup`), decided
    before any query runs, so that a matching and a missing value get the same answer. The history page
    (who changed what, with field names) is the exchange's own record: partner analysts get 404.
    """

    scoped_queryset: ClassVar[Callable[[User], QuerySet[Any]]]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = type(self).scoped_queryset(request.user)
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with this id.")
        return obj

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if scope_of(request.user).is_partner:
            return lookup in self.offered_lookups(request)
        return super().lookup_allowed(lookup, value, request)

    def offered_lookups(self, request: HttpRequest) -> set[str]:
        """The query-string parameters of the filters this page offers the viewer (and its date drill-down)."""
        offered: set[str] = set()
        for list_filter in self.get_list_filter(request):
            offered.update(self._filter_parameters(request, list_filter))
        if self.date_hierarchy:
            offered.update(f"{self.date_hierarchy}__{part}" for part in ("year", "month", "day"))
        return offered

    def _filter_parameters(self, request: HttpRequest, list_filter: Any) -> Iterable[str]:
        # Built as ChangeList builds them, so each filter names its own parameters (`status__exact`, ...).
        if callable(list_filter) and not isinstance(list_filter, (list, tuple)):
            spec = list_filter(request, {}, self.model, self)
        else:
            field_path, filter_class = (
                list_filter
                if isinstance(list_filter, (list, tuple))
                else (list_filter, FieldListFilter.create)
            )
            field = get_fields_from_path(self.model, field_path)[-1]
            spec = filter_class(field, request, {}, self.model, self, field_path=field_path)
        return spec.expected_parameters() or ()

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        if scope_of(request.user).is_partner and ORDER_VAR in request.GET:
            columns = len(self.get_list_display(request)) + (1 if self.get_actions(request) else 0)
            for part in request.GET[ORDER_VAR].split("."):
                if not ORDER_PART.fullmatch(part) or int(part.lstrip("-")) >= columns:
                    raise DisallowedModelAdminLookup("Sorting by a column not shown is not allowed")
        return super().get_changelist_instance(request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)
        except DisallowedModelAdminLookup as refused:
            # A 400 that names the parameter (never its value), the same whatever the value would have matched.
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Filter not offered",
                "reason": str(refused),
            }
            return TemplateResponse(request, "admin/lookup_refused.html", context, status=400)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if scope_of(request.user).is_partner:
            raise Http404(f"No {self.opts.verbose_name} with this id.")
        return super().history_view(request, object_id, extra_context)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return not scope_of(request.user).nothing and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not scope_of(request.user).nothing and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not scope_of(request.user).nothing and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not scope_of(request.user).nothing and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not scope_of(request.user).nothing and super().has_delete_permission(request, obj)
