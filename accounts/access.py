"""Access helpers for the dashboard: the current organization and the user's role in it.

Every page works inside one organization, chosen with the org switcher and kept in
`request.session["org"]` (the organization's code; the JSON API reads the same key).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Case, When
from django.shortcuts import render

from accounts.models import Membership, Organization

SESSION_KEY = "org"


@dataclass(frozen=True)
class Access:
    organization: Organization
    role: str

    @property
    def can_write(self) -> bool:
        return self.role in Membership.WRITERS

    @property
    def can_manage(self) -> bool:
        return self.role in Membership.MANAGERS


def current_access(request) -> Access | None:
    """The organization in the session if the user still belongs to it, else their first one.

    One query on every dashboard request: the organization and the user's role in it together."""
    if hasattr(request, "_access"):
        return request._access
    orgs = Organization.objects.for_user(request.user)
    wanted = request.session.get(SESSION_KEY)
    if wanted and _is_uuid(wanted):
        # The session's organization sorts first when the user still belongs to it, else the first by name.
        orgs = orgs.order_by(Case(When(code=wanted, then=0), default=1), "name")
    organization = orgs.with_role_of(request.user).first() if request.user.is_authenticated else None
    access = None
    if organization is not None:
        if wanted != str(organization.code):
            request.session[SESSION_KEY] = str(organization.code)
        role = organization.user_role or (Membership.Role.OWNER if request.user.is_superuser else None)
        access = Access(organization, role or Membership.Role.VIEWER)
    request._access = access
    return access


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def org_required(view=None, *, write: bool = False, manage: bool = False):
    """Login, an organization, and (optionally) the member or admin role; passes `access` to the view.

    A viewer gets 403 on writes; a user without any organization gets a page that says so.
    """

    def decorator(func):
        @login_required
        @wraps(func)
        def wrapper(request, *args, **kwargs):
            access = current_access(request)
            if access is None:
                return render(request, "accounts/no_org.html", status=403)
            if (write and not access.can_write) or (manage and not access.can_manage):
                raise PermissionDenied("Your role in this organization cannot do that.")
            return func(request, access, *args, **kwargs)

        return wrapper

    return decorator(view) if view is not None else decorator
