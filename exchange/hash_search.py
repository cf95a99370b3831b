"""Admin search by transport hash: a POST form, never a URL.

A hash in a query string (`?q=<64 hex>`) lands in access logs, proxy logs and browser history, so the cluster
and indicator changelists refuse to search by one (`HashQueryRefusingChangeList`) and point to a small form
that posts the hash to the admin's `hash-search/` view (`HashSearchAdmin`), which renders its results itself (no redirect that
would carry the hash). The hash is keyed on the server for every kind, compared, and forgotten: audit entries
hold the number of matches only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse

from exchange.hashing import keyed_tokens
from exchange.models import KeyState
from exchange.normalization import KINDS, is_transport_hash

# At most this many matches are listed on a hash search page (indicators and clusters alike).
HASH_SEARCH_LIMIT = 100

HASH_QUERY_REFUSED = (
    "Nothing was searched: search by transport hash with the hash search form on this page, "
    "which keeps the hash out of URLs, logs and browser history."
)


def looks_like_transport_hash(term: str) -> bool:
    return is_transport_hash(term.strip().lower())


def tokens_for(transport_hash: str) -> list[str]:
    """The keyed tokens the hash would have under every kind (an analyst searches without naming the kind)."""
    pairs = [(kind, transport_hash) for kind in KINDS]
    return keyed_tokens(pairs, settings.EXCHANGE_PEPPERS, KeyState.objects.current_version(lock=False))


class HashSearchForm(forms.Form):
    transport_hash = forms.CharField(
        label="Transport hash",
        max_length=200,
        widget=forms.TextInput(attrs={"size": 70, "autocomplete": "off", "spellcheck": "false"}),
        help_text="64 hex characters, the SHA-256 of the normalised value. Sent by POST: never in a URL.",
    )

    def clean_transport_hash(self) -> str:
        value = self.cleaned_data["transport_hash"].strip().lower()
        if not is_transport_hash(value):
            # Never echo the input: it may be a raw identifier typed by mistake.
            raise forms.ValidationError(
                "A transport hash is 64 hexadecimal characters (the SHA-256 of the normalised value)."
            )
        return value


class HashQueryRefusingChangeList(ChangeList):
    """A changelist that does not search by a transport hash given in the URL, and does not repeat it: the
    search box, the filter and paging links and the result count all behave as if nothing had been typed,
    and the list is empty (the admin's `changelist_view` adds the message pointing to the form)."""

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        self.hash_query_refused = looks_like_transport_hash(request.GET.get(SEARCH_VAR, ""))
        super().__init__(request, *args, **kwargs)

    def get_query_string(self, new_params: Any = None, remove: Any = None) -> str:
        if self.hash_query_refused:  # also for the links ChangeList builds before searching (facets)
            self.params.pop(SEARCH_VAR, None)
            self.filter_params.pop(SEARCH_VAR, None)
        return super().get_query_string(new_params, remove)

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        if self.hash_query_refused:
            self.query = ""
            return super().get_queryset(request, exclude_parameters).none()
        return super().get_queryset(request, exclude_parameters)


class HashSearchAdmin(admin.ModelAdmin):
    """The admin side: the `hash-search/` URL (the admin defines `hash_search_view`), the form on the
    changelist, and the changelist's refusal of `?q=<hash>` with a message pointing to the form."""

    hash_search_view: Callable[[HttpRequest], HttpResponse]

    def get_urls(self) -> list[URLPattern]:
        search = path(
            "hash-search/",
            self.admin_site.admin_view(self.hash_search_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_hash_search",
        )
        return [search, *super().get_urls()]  # before `<path:object_id>/`, which would take it

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return HashQueryRefusingChangeList

    def hash_search_context(self, request: HttpRequest) -> dict[str, Any]:
        return {
            "hash_search_form": HashSearchForm(),
            "hash_search_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_hash_search"),
        }

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if looks_like_transport_hash(request.GET.get(SEARCH_VAR, "")):
            messages.warning(request, HASH_QUERY_REFUSED)
        return super().changelist_view(
            request, {**self.hash_search_context(request), **(extra_context or {})}
        )
