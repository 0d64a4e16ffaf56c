"""Sign in/out, the organization switcher and the API keys page."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import shown_once
from accounts.access import SESSION_KEY, Access, _is_uuid, org_required
from accounts.models import ApiKey, Organization

_OBJECT_PAGE = re.compile(r"^/runs/[0-9a-f]{8}-")

login = auth_views.LoginView.as_view(template_name="accounts/login.html", redirect_authenticated_user=True)
logout = auth_views.LogoutView.as_view()


@login_required
@require_POST
def switch_org(request):
    code = request.POST.get("org", "")
    organization = Organization.objects.for_user(request.user).filter(code=code).first() if _is_uuid(code) else None
    if organization is None:
        raise Http404("No such organization.")
    request.session[SESSION_KEY] = str(organization.code)
    messages.info(request, f"Now showing {organization.name}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}) or _OBJECT_PAGE.match(target):
        # Object pages belong to the previous organization: go back to the list instead.
        target = "/runs/"
    return redirect(target or "/runs/")


# The session slot that carries a just-created key from the POST to the page it redirects to.
NEW_KEY_SESSION = "new_api_key"


@org_required(manage=True)
def api_keys(request, access: Access):
    keys = ApiKey.objects.filter(organization=access.organization).select_related("created_by")
    context = {"keys": keys, "access": access}
    context.update(shown_once.take(request, NEW_KEY_SESSION) or {})
    return render(request, "accounts/api_keys.html", context)


@org_required(manage=True)
@require_POST
def api_key_create(request, access: Access):
    name = request.POST.get("name", "").strip()[:100]
    if not name:
        messages.error(request, "Give the key a name, e.g. the integration that will use it.")
        return redirect("api-keys")
    if "\x00" in name:
        messages.error(request, "A key's name cannot contain NUL characters.")
        return redirect("api-keys")
    if ApiKey.objects.filter(organization=access.organization, name=name, revoked=None).exists():
        messages.error(request, f"An active key named {name!r} already exists.")
        return redirect("api-keys")
    key, plain = ApiKey.issue(
        access.organization, name, read_only=bool(request.POST.get("read_only")), created_by=request.user
    )
    # POST-redirect-GET, so a reload never re-posts the form; the keys page shows the key once.
    shown_once.keep_for_next_page(request, NEW_KEY_SESSION, {"plain": plain, "new_key_name": key.name})
    return redirect("api-keys")


@org_required(manage=True)
@require_POST
def api_key_revoke(request, access: Access, code):
    key = get_object_or_404(ApiKey, organization=access.organization, code=code)
    key.revoke()
    messages.success(request, f"Revoked {key.name}. Integrations using it now get 401.")
    return redirect("api-keys")
