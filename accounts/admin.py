from django.contrib import admin

from accounts.models import AnalystProfile, ApiKey, Platform


@admin.register(Platform)
class PlatformAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "active", "report_cadence", "created_at")
    list_filter = ("active", "report_cadence")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "platform", "name", "scopes", "created_at", "last_used_at", "revoked_at")
    list_filter = ("platform", "revoked_at")
    readonly_fields = ("lookup", "created_at", "last_used_at", "revoked_at")
    exclude = ("digest",)


@admin.register(AnalystProfile)
class AnalystProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "platform")
    list_filter = ("platform",)
