from __future__ import annotations

from django.contrib import admin

from accounts.scoping import OrgScopedAdmin
from runs.models import Run, RunEvent, RunOutput


class RunOutputInline(admin.TabularInline):
    model = RunOutput
    extra = 0
    readonly_fields = ("filename", "kind", "node_id", "archived", "size_bytes", "provider_url_expires", "archive_error")
    fields = readonly_fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class RunEventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    readonly_fields = ("created", "source", "from_status", "to_status", "provider_status", "detail")
    fields = readonly_fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(OrgScopedAdmin):
    list_display = ["code", "provider", "external_id", "status", "provider_status", "created", "finished"]
    list_filter = ["status", "origin", "provider__kind"]
    search_fields = ["external_id", "code"]
    list_select_related = ["provider"]
    date_hierarchy = "created"
    scoped_foreign_keys = {"organization": "", "provider": "organization", "credential": "provider__organization"}
    raw_id_fields = ["retry_of"]
    readonly_fields = [
        "code",
        "status",
        "provider_status",
        "progress",
        "live_status",
        "error",
        "created",
        "queued",
        "started",
        "finished",
        "last_synced",
        "next_sync_after",
        "sync_locked_until",
        "sync_failures",
        "last_sync_error",
        "unknown_since",
        "n_outputs",
    ]
    inlines = [RunOutputInline, RunEventInline]

    def get_readonly_fields(self, request, obj=None):
        # Which provider run a record tracks is fixed once created; status only changes through runs.applying.
        fixed = ["organization", "provider", "credential", "external_id", "retry_of"] if obj else []
        return [*self.readonly_fields, *fixed]


@admin.register(RunOutput)
class RunOutputAdmin(OrgScopedAdmin):
    org_path = "run__organization"
    list_display = ["filename", "kind", "run", "archived", "size_bytes", "created"]
    list_filter = ["kind"]
    search_fields = ["filename", "run__external_id"]
    list_select_related = ["run__provider"]
    readonly_fields = [f.name for f in RunOutput._meta.fields if f.name != "id"]

    def has_add_permission(self, request):
        return False


@admin.register(RunEvent)
class RunEventAdmin(OrgScopedAdmin):
    org_path = "run__organization"
    list_display = ["run", "created", "source", "from_status", "to_status", "provider_status"]
    list_filter = ["source", "to_status"]
    list_select_related = ["run__provider"]
    readonly_fields = ["run", "created", "source", "from_status", "to_status", "provider_status", "detail"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
