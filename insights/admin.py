from django.contrib import admin, messages

from accounts.scoping import OrgScopedAdmin
from insights.costing import price_runs
from insights.models import Price, Workflow
from runs.models import Run


@admin.register(Price)
class PriceAdmin(OrgScopedAdmin):
    """A provider's prices; saving or deleting one re-costs that provider's finished runs."""

    org_path = "provider__organization"
    scoped_foreign_keys = {"provider": "organization"}
    list_display = ["provider", "gpu", "per_gpu_second", "per_run", "updated"]
    list_filter = ["provider__kind"]
    search_fields = ["provider__name", "gpu"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._reprice(request, obj)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        self._reprice(request, obj)

    def _reprice(self, request, price: Price) -> None:
        changed = price_runs(Run.objects.filter(provider_id=price.provider_id))
        messages.info(request, f"{changed:,} finished run(s) of {price.provider.name} re-costed.")


@admin.register(Workflow)
class WorkflowAdmin(OrgScopedAdmin):
    scoped_foreign_keys = {"organization": ""}
    list_display = ["fingerprint", "name", "label", "organization", "created"]
    search_fields = ["fingerprint", "name", "label"]
    readonly_fields = ["fingerprint", "name", "created", "updated"]

    def has_add_permission(self, request):
        return False  # a workflow exists through its runs
