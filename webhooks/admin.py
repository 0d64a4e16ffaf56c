"""Webhook endpoints and their delivery log in the admin, scoped to the user's organizations."""

from __future__ import annotations

from django.contrib import admin, messages

from accounts.scoping import OrgScopedAdmin
from webhooks.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OrgScopedAdmin):
    list_display = ["url", "organization", "events", "is_active", "created"]
    list_filter = ["is_active"]
    fields = ["organization", "url", "description", "events", "is_active"]

    def save_model(self, request, obj, form, change):
        if not change:
            plain = obj.rotate_secret()
            super().save_model(request, obj, form, change)
            messages.warning(request, f"Signing secret (shown once, store it now): {plain}")
            return
        super().save_model(request, obj, form, change)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(OrgScopedAdmin):
    org_path = "endpoint__organization"
    list_select_related = ["endpoint"]
    list_display = ["event_type", "short_endpoint", "state", "attempt", "status_code", "latency_ms", "created"]
    list_filter = ["event_type"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="endpoint", ordering="endpoint__url")
    def short_endpoint(self, obj: WebhookDelivery) -> str:
        url = obj.endpoint.url
        return url if len(url) <= 40 else url[:39] + "…"

    @admin.action(description="Redeliver the selected messages")
    def redeliver(self, request, queryset):
        for delivery in queryset:
            delivery.redeliver()
        self.message_user(request, f"{queryset.count()} message(s) queued for redelivery.")
