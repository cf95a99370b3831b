from __future__ import annotations

from datetime import UTC
from typing import Any

import django_filters

from exchange.models import Seller
from exchange.normalization import REASONS, STATUSES


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO-8601 filter value converted to UTC: PostgreSQL refuses offsets beyond +-15:59 that Python
    accepts, which made such a query a 500 instead of a result."""

    def filter(self, qs: Any, value: Any) -> Any:
        return super().filter(qs, value.astimezone(UTC) if value else value)


class SellerFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=[(s, s) for s in STATUSES])
    reason = django_filters.ChoiceFilter(choices=[(r, r) for r in REASONS], method="filter_reason")
    reported_after = UtcDateTimeFilter(field_name="reported_at", lookup_expr="gte")
    reported_before = UtcDateTimeFilter(field_name="reported_at", lookup_expr="lt")
    updated_since = UtcDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    retracted = django_filters.BooleanFilter(field_name="retracted_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Seller
        fields = ("status", "reason", "reported_after", "reported_before", "updated_since", "retracted")

    def filter_reason(self, queryset, name, value):
        return queryset.filter(reason_codes__contains=f"|{value}|")
