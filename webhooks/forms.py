from __future__ import annotations

import ipaddress

from django import forms
from django.conf import settings
from yarl import URL

from comfytrack.net import AddressRefused, blocked_reason
from comfytrack.safe_http import DEFAULT_PORTS
from webhooks.delivery import ALLOW_PRIVATE_SETTING, target_guard
from webhooks.models import EVENT_TYPES


class EndpointForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label="URL",
        help_text="Where comfytrack POSTs each event, e.g. https://ci.example.com/hooks/comfytrack.",
    )
    description = forms.CharField(max_length=200, required=False, help_text="For people: what listens there.")
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event, including kinds added later.",
    )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        parsed = URL(url)
        if parsed.scheme not in ("http", "https"):
            raise forms.ValidationError("Use an http:// or https:// URL.")
        guard = target_guard(settings.COMFYTRACK_WEBHOOK_ALLOW_PRIVATE_HOSTS)
        host = parsed.host or ""
        local = host.lower() in ("localhost", "localhost.localdomain")
        if local and not guard.may_be_private(host, parsed.port or DEFAULT_PORTS[parsed.scheme]):
            raise forms.ValidationError(
                "Webhooks cannot target this server's own network (localhost). To allow it, e.g. for local "
                f"testing, list the host and port in {ALLOW_PRIVATE_SETTING} (e.g. localhost:8080)."
            )
        try:
            # IP literals are checked now; host names are checked at every delivery (they may move).
            guard.check_url(parsed)
        except AddressRefused:
            raise forms.ValidationError(
                f"Webhooks cannot target private or local addresses ({_why_refused(host)}). "
                f"To allow one on your own network, list its host and port in {ALLOW_PRIVATE_SETTING}."
            ) from None
        return url


def _why_refused(host: str) -> str:
    """ "[::1] is a loopback address": the whole host (IPv6 literals have colons) and the guard's reason."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"{host} is not a public address"
    shown = f"[{host}]" if ip.version == 6 else host
    return f"{shown} is {blocked_reason(ip) or 'not a public address'}"
