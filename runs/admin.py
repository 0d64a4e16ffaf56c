from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from accounts.scoping import OrgScopedAdmin, ScopedChoicesMixin
from runs.models import Run, RunEvent, RunOutput


@admin.display(description="run")
def short_run(obj) -> str:
    """An output's or event's run as "Provider: external id" cut to fit a list column."""
    label = f"{obj.run.provider.name}: {obj.run.external_id or obj.run.code}"
    return label if len(label) <= 32 else label[:31] + "…"


def _pretty_json(value) -> str:
    if not value:
        return "—"
    return format_html('<pre class="readonly-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False)[:100_000])


class _ReadOnlyRunInline(ScopedChoicesMixin, admin.TabularInline):
    """A run's outputs or events, shown on the run's page to whoever may see that run (the run admin is
    scoped to the organization; these rows have no page of their own to check)."""

    extra = 0
    can_delete = False

    def has_view_permission(self, request, obj=None):
        return True  # only ever rendered inside the run's page, which the run admin has scoped

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RunOutputInline(_ReadOnlyRunInline):
    model = RunOutput
    readonly_fields = ("filename", "kind", "node_id", "archived", "size_bytes", "provider_url_expires", "archive_error")
    fields = readonly_fields


class RunEventInline(_ReadOnlyRunInline):
    model = RunEvent
    ordering = ["-created", "-id"]  # newest first, as on the run page's history
    readonly_fields = ("created", "source", "from_status", "to_status", "provider_status", "detail")
    fields = readonly_fields


@admin.register(Run)
class RunAdmin(OrgScopedAdmin):
    list_display = ["short_code", "provider", "short_external_id", "status", "provider_status", "created", "finished"]
    list_filter = ["status", "origin", "provider__kind"]
    search_fields = ["external_id", "code"]
    list_select_related = ["provider"]
    date_hierarchy = "created"
    autocomplete_fields = ["retry_of"]
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
        # Where asking the provider for a tracked run's graph stands (runs.graphs).
        "graph_due",
        "graph_attempts",
        "workflow_json",
        "inputs_json",
    ]
    # Which workflow ran and with what is history: shown, never edited (the JSON fields are left out).
    exclude = ["workflow", "inputs", "search_text"]
    inlines = [RunOutputInline, RunEventInline]

    @admin.display(description="code", ordering="code")
    def short_code(self, obj: Run) -> str:
        return str(obj.code)[:8] + "…"

    @admin.display(description="external id", ordering="external_id")
    def short_external_id(self, obj: Run) -> str:
        return obj.external_id if len(obj.external_id) <= 24 else obj.external_id[:23] + "…"

    @admin.display(description="workflow")
    def workflow_json(self, obj: Run) -> str:
        return _pretty_json(obj.workflow)

    @admin.display(description="inputs")
    def inputs_json(self, obj: Run) -> str:
        return _pretty_json(obj.inputs)

    def get_readonly_fields(self, request, obj=None):
        # Which provider run a record tracks is fixed once created; status only changes through runs.applying.
        fixed = ["organization", "provider", "credential", "external_id", "retry_of"] if obj else []
        return [*self.readonly_fields, *fixed]


@admin.register(RunOutput)
class RunOutputAdmin(OrgScopedAdmin):
    org_path = "run__organization"
    short_run = staticmethod(short_run)
    list_display = ["filename", "kind", "short_run", "archived", "size_bytes", "created"]
    list_filter = ["kind"]
    search_fields = ["filename", "run__external_id"]
    list_select_related = ["run__provider"]
    readonly_fields = [f.name for f in RunOutput._meta.fields if f.name != "id"]

    def has_add_permission(self, request):
        return False


@admin.register(RunEvent)
class RunEventAdmin(OrgScopedAdmin):
    org_path = "run__organization"
    short_run = staticmethod(short_run)
    list_display = ["short_run", "created", "source", "from_status", "to_status", "provider_status"]
    list_filter = ["source", "to_status"]
    list_select_related = ["run__provider"]
    readonly_fields = ["run", "created", "source", "from_status", "to_status", "provider_status", "detail"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
