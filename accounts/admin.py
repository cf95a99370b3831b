"""Admin for platforms (report settings), their API keys, analyst accounts and the audit log; rate-limited
admin login; and the bases every app's admin builds on (`ScopedModelAdmin`, `DurableSaveAdmin`,
`ReadOnlyMixin`).

A new key is shown exactly once, on the page that answers its creation (never in a message cookie, never
again afterwards); revoking is an action. Key creation and revocation are audit-logged. Only exchange
analysts manage platforms and keys (their querysets give partner analysts none of them, see
`accounts.scoping`) and read the audit log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.filters import FieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts.actions import (
    do_create_api_key,
    do_remove_webhook,
    do_revoke_api_key,
    do_rotate_webhook_secret,
    do_save_platform,
    do_set_webhook,
)
from accounts.login import rate_limited
from accounts.models import SCOPES, AnalystProfile, ApiKey, AuditEntry, Platform
from accounts.scoping import ScopedQuerySet, scope_of
from accounts.webhooks import MAX_URL_LENGTH, WebhookUrlError, check_url

admin.site.login = rate_limited(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "Bad-actor exchange"
admin.site.site_title = "Bad-actor exchange"
admin.site.index_title = "Investigations"


class NamedDefaultFilter(admin.SimpleListFilter):
    """A list filter whose unfiltered choice is a named default ("Live", "Pending", ...) rather than Django's
    "All": the list opens on what matters, and "All" is one of the `lookups` when offered."""

    default_label = ""

    def default_selected(self) -> bool:
        return self.value() is None

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.default_selected(),
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": self.default_label,
        }
        for value, title in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": title,
            }


class DurableSaveAdmin(admin.ModelAdmin):
    """For admins whose saves go through one durable `do_*` action (the action owns the transaction and the
    audit entry): Django's change form wraps every POST in a transaction, inside which a durable action
    cannot run, so the form runs unwrapped (the admin's own LogEntry is then written after the action)."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        unwrapped = self._changeform_view  # type: ignore[attr-defined]
        return unwrapped(request, object_id, form_url, extra_context)


class ReadOnlyMixin:
    """Rows written by the system: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# ------------------------------------------------------------------------------------------------ scoping


ORDER_PART = re.compile(r"-?[0-9]{1,3}")


class ScopedModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose rows are what `accounts.scoping` lets the viewer see (`visible_to`): its model's
    queryset must be a `ScopedQuerySet`, or the page refuses to show anything (ImproperlyConfigured).

    An object outside the viewer's scope does not exist for them: its change, history and delete pages answer
    404 (not the admin's default redirect, and not a 403 that would confirm the object exists).

    A partner analyst's changelist takes only the filters the page offers them and orders only by the columns
    it shows them: Django otherwise accepts any lookup on a local field (`?notes__startswith=a`), an oracle on
    whatever the page hides. Anything else is refused with a 400 (`DisallowedModelAdminLookup`), decided
    before any query runs, so that a matching and a missing value get the same answer. The history page
    (who changed what, with field names) is the exchange's own record: partner analysts get 404.
    """

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = self.model._default_manager.get_queryset()
        if not isinstance(queryset, ScopedQuerySet):
            raise ImproperlyConfigured(
                f"{self.model.__name__}'s queryset is not a ScopedQuerySet: its admin cannot know what a "
                "viewer may see (accounts.scoping)"
            )
        queryset = queryset.visible_to(request.user)
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


# ------------------------------------------------------------------------------------------------ platforms


class RecipientsField(forms.CharField):
    """Email addresses, one per line (or comma-separated), stored as a JSON list."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 50})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]

    def validate(self, value: Any) -> None:
        for address in value:
            try:
                validate_email(address)
            except ValidationError as error:
                raise ValidationError(f"Not an email address: {address}") from error


class PlatformForm(forms.ModelForm):
    report_recipients = RecipientsField(
        required=False, help_text="Who receives this platform's cluster reports: one email address per line."
    )
    # Not the model field's name: the URL is saved by do_set_webhook (checked, audited, secret drawn), never
    # copied onto the platform by the form.
    webhook = forms.CharField(
        label="Webhook URL",
        required=False,
        max_length=MAX_URL_LENGTH,
        widget=forms.URLInput(attrs={"size": 70}),
        help_text=(
            "Where the platform receives signed events (https://, public addresses only). Empty: no webhooks. "
            "The first URL saved draws the signing secret, shown once."
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["webhook"].initial = self.instance.webhook_url

    def clean_webhook(self) -> str:
        url = (self.cleaned_data.get("webhook") or "").strip()
        if url and url != self.instance.webhook_url:
            try:
                url = check_url(url)
            except WebhookUrlError as error:
                raise ValidationError(str(error)) from None
        return url

    class Meta:
        model = Platform
        fields = (
            "name",
            "slug",
            "active",
            "default_region",
            "report_recipients",
            "report_cadence",
            "stix_tlp",
        )


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("prefix", "name", "scopes", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Platform)
class PlatformAdmin(DurableSaveAdmin, ScopedModelAdmin):
    form = PlatformForm
    inlines = (ApiKeyInline,)
    list_display = ("name", "slug", "active", "report_cadence", "recipients", "active_keys", "last_report_at")
    list_filter = ("active", "report_cadence")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("last_report_at", "created_at", "new_key", "webhook_secret")
    fieldsets = (
        (None, {"fields": ("name", "slug", "active", "default_region", "created_at")}),
        ("Cluster reports", {"fields": ("report_recipients", "report_cadence", "last_report_at")}),
        ("Webhook", {"fields": ("webhook", "webhook_secret")}),
        ("STIX / TAXII", {"fields": ("stix_tlp",)}),
        ("API keys", {"fields": ("new_key",)}),
    )
    actions = ("rotate_webhook_secret",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .annotate(usable_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead: a platform's reports and audit trail outlive it

    @admin.display(description="recipients")
    def recipients(self, obj: Platform) -> int:
        return len(obj.report_recipients or [])

    @admin.display(description="active keys", ordering="usable_keys")
    def active_keys(self, obj: Platform) -> int:
        return getattr(obj, "usable_keys", 0)

    @admin.display(description="new key")
    def new_key(self, obj: Platform) -> str:
        if obj.pk is None:
            return "Save the platform first."
        url = reverse("admin:accounts_apikey_add") + f"?platform={obj.pk}"
        return format_html('<a class="button" href="{}">Create an API key for {}</a>', url, obj.name)

    @admin.display(description="webhook secret")
    def webhook_secret(self, obj: Platform) -> str:
        if not obj.webhook_secret_nonce or obj.webhook_secret_created_at is None:
            return "None yet: saving a webhook URL draws one (shown once)."
        return (
            f"Drawn {obj.webhook_secret_created_at:%Y-%m-%d %H:%M} UTC. It is not shown again: to hand a new one "
            "over, use the action “Rotate the webhook secret” on the platform list."
        )

    def save_model(self, request: HttpRequest, obj: Platform, form: forms.ModelForm, change: bool) -> None:
        actor = request.user.get_username()
        changed = [name for name in form.changed_data if name != "webhook"]
        do_save_platform(obj, actor, changed if change else None)
        url = form.cleaned_data.get("webhook", "")
        if url == obj.webhook_url:
            return
        if not url:
            do_remove_webhook(obj, actor)
            return
        secret = do_set_webhook(obj, url, actor)
        if secret is not None:
            obj.__dict__["_webhook_secret_once"] = secret  # read (and dropped) by the response, never stored

    def _secret_page(self, request: HttpRequest, platform: Platform, secret: str) -> HttpResponse:
        response = TemplateResponse(
            request,
            "admin/accounts/platform/webhook_secret.html",
            {
                **self.admin_site.each_context(request),
                "title": "Webhook secret",
                "opts": self.opts,
                "platform": platform,
                "secret": secret,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    def response_add(
        self, request: HttpRequest, obj: Platform, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = obj.__dict__.pop("_webhook_secret_once", None)
        if secret is not None:
            return self._secret_page(request, obj, secret)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Platform) -> HttpResponse:
        secret = obj.__dict__.pop("_webhook_secret_once", None)
        if secret is not None:
            return self._secret_page(request, obj, secret)
        return super().response_change(request, obj)

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)

    @admin.action(description="Rotate the webhook secret (shows the new one once)", permissions=["rotate"])
    def rotate_webhook_secret(
        self, request: HttpRequest, queryset: QuerySet[Platform]
    ) -> HttpResponse | None:
        platforms = list(queryset[:2])
        if len(platforms) != 1:
            self.message_user(request, "Select exactly one platform to rotate its secret.", messages.ERROR)
            return None
        try:
            secret = do_rotate_webhook_secret(platforms[0], request.user.get_username())
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
            return None
        return self._secret_page(request, platforms[0], secret)


# ------------------------------------------------------------------------------------------------ API keys


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("platform", "name", "scope_submit", "scope_lookup", "scope_read")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not any(cleaned.get(f"scope_{scope}") for scope in SCOPES):
            raise ValidationError(f"Give the key at least one scope ({', '.join(SCOPES)}).")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(DurableSaveAdmin, ScopedModelAdmin):
    list_display = ("prefix", "platform", "name", "scope_list", "created_at", "last_used_at", "state")
    list_filter = ("platform", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("platform",)
    search_fields = ("lookup", "name", "platform__name")
    search_help_text = "A key prefix (bax_…), its name or platform."
    actions = ("revoke",)
    readonly_fields = ("prefix", "platform", "scope_list", "created_at", "last_used_at", "revoked_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["platform", "name", "scope_submit", "scope_lookup", "scope_read"]
        # A key's scopes are fixed: create a new key for other scopes, then revoke this one.
        return ["prefix", "platform", "name", "scope_list", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if term.startswith("bax_"):
            return queryset.filter(lookup=term[4:].split("_")[0]), False
        return super().get_search_results(request, queryset, term)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the audit trail keeps naming the key

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="state", ordering="revoked_at")
    def state(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            return format_html('<span class="quiet">revoked {}</span>', f"{obj.revoked_at:%Y-%m-%d}")
        return "active"

    @admin.action(description="Revoke the selected keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        actor = request.user.get_username()
        revoked = sum(do_revoke_api_key(key, actor) for key in queryset.filter(revoked_at__isnull=True))
        self.message_user(
            request, f"Revoked {revoked} key(s). Calls with them now get 401.", messages.SUCCESS
        )

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        scopes = [scope for scope in SCOPES if form.cleaned_data.get(f"scope_{scope}")]
        key, full_key = do_create_api_key(
            form.cleaned_data["platform"], scopes, form.cleaned_data["name"], request.user.get_username()
        )
        # Become the saved row, so that the admin's log and redirect refer to it.
        obj.pk, obj.lookup, obj.digest, obj.created_at = key.pk, key.lookup, key.digest, key.created_at
        obj._state.adding, obj._state.db = False, key._state.db
        obj.__dict__["_full_key_once"] = full_key  # read (and dropped) by response_add, never stored

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        full_key = obj.__dict__.pop("_full_key_once", None)
        if full_key is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "admin/accounts/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "title": "API key created",
                "opts": self.opts,
                "key": obj,
                "full_key": full_key,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"scope_read": True, **super().get_changeform_initial_data(request)}


# ------------------------------------------------------------------------------------------------ analysts


@admin.register(AnalystProfile)
class AnalystProfileAdmin(ScopedModelAdmin):
    list_display = ("user", "platform", "role")
    list_filter = ("platform",)
    list_select_related = ("user", "platform")
    search_fields = ("user__username",)

    @admin.display(description="role")
    def role(self, obj: AnalystProfile) -> str:
        return "exchange analyst" if obj.is_exchange_analyst else "partner analyst"


# ------------------------------------------------------------------------------------------------ audit log


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyMixin, ScopedModelAdmin):
    list_display = ("created_at", "action", "actor", "platform", "target", "details_text")
    list_filter = ("action", "platform", "created_at")
    list_select_related = ("platform",)
    search_fields = ("actor", "object_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    fields = ("created_at", "action", "actor", "platform", "object_type", "object_id", "details")

    @admin.display(description="object")
    def target(self, obj: AuditEntry) -> str:
        if obj.object_type == "cluster" and obj.object_id.isdigit():
            url = reverse("admin:graph_actorcluster_change", args=[obj.object_id])
            return format_html('<a href="{}">cluster #{}</a>', url, obj.object_id)
        if obj.object_type == "indicator" and obj.object_id.isdigit():
            url = reverse("admin:exchange_indicator_change", args=[obj.object_id])
            return format_html('<a href="{}">indicator #{}</a>', url, obj.object_id)
        # An object id can be a partner's seller reference of 128 characters: breakable (.mono), like details.
        if not obj.object_id:
            return obj.object_type
        return format_html('{} <span class="mono">{}</span>', obj.object_type, obj.object_id)

    @admin.display(description="details")
    def details_text(self, obj: AuditEntry) -> str:
        # Monospaced and breakable anywhere (the change list's .mono): one long key=value must not widen the list.
        text = ", ".join(f"{key}={value}" for key, value in sorted((obj.details or {}).items()))
        return format_html('<span class="mono">{}</span>', text) if text else ""
