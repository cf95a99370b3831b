from __future__ import annotations

from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field

from exchange.models import Seller
from exchange.normalization import REASONS, STATUSES
from exchange.timestamps import PartnerTimestampError, parse_partner_timestamp


class PartnerTimestampField(forms.Field):
    """A date-time query parameter bounded like every partner-sent timestamp (exchange.timestamps), in UTC.

    Absent means no filter; present but empty is refused: `?updated_since=` is more likely a client's bug
    than a wish for everything."""

    def to_python(self, value: Any) -> datetime | None:
        if value is None:
            return None
        try:
            return parse_partner_timestamp(value, timezone.now())
        except PartnerTimestampError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None

    def validate(self, value: Any) -> None:
        pass  # to_python has refused everything unacceptable, the empty string included


class StrictBooleanField(forms.Field):
    """`true` or `false` (also `True`/`False`, `1`/`0`); anything else is a 400, where Django's
    NullBooleanField read `null` or a typo as "no filter". Absent means no filter; present but empty
    (`?retracted=`) is refused like any other value that is not a boolean."""

    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value: Any) -> bool | None:
        if value is None:
            return None
        if value == "":
            raise forms.ValidationError("must be true or false, not empty", code="invalid")
        if not isinstance(value, str) or value.lower() not in self.VALUES:
            raise forms.ValidationError("must be true or false", code="invalid")
        return self.VALUES[value.lower()]

    def validate(self, value: Any) -> None:
        pass


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class PresentChoiceField(forms.ChoiceField):
    """Absent means no filter; present but empty (`?status=`) is refused like any value not in the enum."""

    def to_python(self, value: Any) -> str:
        if value == "":
            raise forms.ValidationError("must be one of the listed values, not empty", code="invalid")
        return super().to_python(value)


class StrictChoiceFilter(django_filters.ChoiceFilter):
    field_class = PresentChoiceField


class WholeNumberField(forms.IntegerField):
    """ASCII digits only, like the paging parameters: Django's IntegerField also reads `0.0`, ` 5 ` and `+5`
    as whole numbers, which the schema's `integer` does not admit in a query string. Absent means no filter;
    present but empty is refused like the other strict filters."""

    def to_python(self, value: Any) -> int | None:
        if value is None:
            return None
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return int(value)


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": 100})
class RiskFilter(django_filters.NumberFilter):
    """A risk score bound: a whole number 0-100 (a fraction was accepted and compared as a decimal)."""

    field_class = WholeNumberField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, min_value=0, max_value=100, **kwargs)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO-8601 filter value, bounded and converted to UTC: year 9999, year 1 or an offset PostgreSQL
    refuses made such a query a 500 instead of a 400 naming the parameter."""

    field_class = PartnerTimestampField  # the OpenAPI schema still documents it as a date-time


class SellerFilter(django_filters.FilterSet):
    status = StrictChoiceFilter(choices=[(s, s) for s in STATUSES])
    reason = StrictChoiceFilter(choices=[(r, r) for r in REASONS], method="filter_reason")
    reported_after = UtcDateTimeFilter(field_name="reported_at", lookup_expr="gte")
    reported_before = UtcDateTimeFilter(field_name="reported_at", lookup_expr="lt")
    updated_since = UtcDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    retracted = StrictBooleanFilter(field_name="retracted_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Seller
        fields = ("status", "reason", "reported_after", "reported_before", "updated_since", "retracted")

    def filter_reason(self, queryset, name, value):
        return queryset.with_reason(value)
