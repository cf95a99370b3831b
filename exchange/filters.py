from __future__ import annotations

import django_filters

from exchange.models import Seller
from exchange.normalization import REASONS, STATUSES


class SellerFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=[(s, s) for s in STATUSES])
    reason = django_filters.ChoiceFilter(choices=[(r, r) for r in REASONS], method="filter_reason")
    reported_after = django_filters.IsoDateTimeFilter(field_name="reported_at", lookup_expr="gte")
    reported_before = django_filters.IsoDateTimeFilter(field_name="reported_at", lookup_expr="lt")
    updated_since = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    retracted = django_filters.BooleanFilter(field_name="retracted_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Seller
        fields = ("status", "reason", "reported_after", "reported_before", "updated_since", "retracted")

    def filter_reason(self, queryset, name, value):
        return queryset.filter(reason_codes__contains=f"|{value}|")
