"""The /settings/webhooks/ pages: endpoints of the current organization and their delivery log.

Any member may look; only owners and admins may change anything (403 otherwise). Another
organization's endpoint or delivery is a 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import shown_once
from accounts.access import Access, org_required
from webhooks.forms import EndpointForm
from webhooks.models import WebhookDelivery, WebhookEndpoint, mask_urls
from webhooks.ping import send_test

# The session slot that carries a new endpoint's signing secret from the POST to its page.
NEW_SECRET_SESSION = "new_webhook_secret"  # noqa: S105 — a session key, not a secret


def _get_endpoint(access: Access, code) -> WebhookEndpoint:
    """The endpoint if it belongs to the current organization, else 404."""
    return get_object_or_404(WebhookEndpoint, organization=access.organization, code=code)


@require_http_methods(["GET", "POST"])
@org_required
def endpoint_list(request: HttpRequest, access: Access) -> HttpResponse:
    if request.method == "POST" and not access.can_manage:
        raise PermissionDenied("Only owners and admins can change webhooks.")
    organization, can_manage = access.organization, access.can_manage
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        created = WebhookEndpoint(
            organization=organization,
            url=form.cleaned_data["url"],
            description=form.cleaned_data["description"],
            events=form.cleaned_data["events"],
            created_by=request.user if request.user.is_authenticated else None,
        )
        secret = created.rotate_secret()
        created.save()
        # POST-redirect-GET, so a reload never adds the endpoint twice; its page shows the secret once.
        shown_once.keep_for_next_page(request, NEW_SECRET_SESSION, {"code": str(created.code), "secret": secret})
        return redirect("webhooks:detail", code=created.code)
    context = {
        "organization": organization,
        "endpoints": WebhookEndpoint.objects.filter(organization=organization),
        "form": form,
        "can_manage": can_manage,
    }
    return render(request, "webhooks/endpoint_list.html", context)


@org_required
def endpoint_detail(request: HttpRequest, access: Access, code) -> HttpResponse:
    endpoint = _get_endpoint(access, code)
    deliveries = list(endpoint.deliveries.order_by("-created", "-id")[:100])
    if not access.can_manage:
        # Viewers and members see what happened, not the receiver's URL or what it answered (either may
        # carry the receiver's secret); these instances are for display only and are never saved.
        for delivery in deliveries:
            delivery.error, delivery.response_excerpt = mask_urls(delivery.error), ""
    context = {"endpoint": endpoint, "deliveries": deliveries, "can_manage": access.can_manage}
    new = shown_once.take(request, NEW_SECRET_SESSION, code=str(endpoint.code))
    if new:
        context["secret"] = new["secret"]
    return render(request, "webhooks/endpoint_detail.html", context)


@org_required(manage=True)
@require_POST
def endpoint_delete(request: HttpRequest, access: Access, code) -> HttpResponse:
    endpoint = _get_endpoint(access, code)
    endpoint.delete()
    messages.success(request, f"Deleted the webhook endpoint {endpoint.url}.")
    return redirect("webhooks:list")


@org_required(manage=True)
@require_POST
def endpoint_toggle(request: HttpRequest, access: Access, code) -> HttpResponse:
    endpoint = _get_endpoint(access, code)
    endpoint.is_active = not endpoint.is_active
    endpoint.save(update_fields=["is_active"])
    return redirect("webhooks:detail", code=endpoint.code)


@org_required(manage=True)
@require_POST
def endpoint_test(request: HttpRequest, access: Access, code) -> HttpResponse:
    """Queue a `webhook.test` message: the log then shows what the receiver answered."""
    endpoint = _get_endpoint(access, code)
    delivery = send_test(endpoint)
    messages.success(request, f"Test delivery {delivery.event_id} queued: its outcome appears in the log below.")
    return redirect("webhooks:detail", code=endpoint.code)


@org_required(manage=True)
@require_POST
def redeliver(request: HttpRequest, access: Access, code, delivery) -> HttpResponse:
    endpoint = _get_endpoint(access, code)
    original = get_object_or_404(WebhookDelivery, endpoint=endpoint, code=delivery)
    original.redeliver()
    messages.success(request, f"Queued {original.event_type} ({original.event_id}) for redelivery.")
    return redirect("webhooks:detail", code=endpoint.code)
