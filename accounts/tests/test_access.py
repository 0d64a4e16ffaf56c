"""accounts.access.current_access: the session's organization (or the first one) and the role, in one query."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.test import RequestFactory

from accounts.access import SESSION_KEY, current_access
from accounts.models import Membership, Organization


def request_for(user, session_org: str | None = None):
    request = RequestFactory().get("/runs/")
    request.user = user
    request.session = SessionStore()
    if session_org is not None:
        request.session[SESSION_KEY] = session_org
    return request


def test_it_reads_the_session_organization_and_role_in_one_query(alice, bob, org, django_assert_num_queries):
    later = Organization.objects.create(name="Zeta", slug="zeta")  # sorts after "Acme"
    Membership.objects.create(organization=later, user=bob, role="admin")
    request = request_for(bob, str(later.code))
    with django_assert_num_queries(1):
        access = current_access(request)
        assert current_access(request) is access  # cached on the request
    assert access is not None
    assert (access.organization, access.role, access.can_manage) == (later, "admin", True)
    with django_assert_num_queries(1):
        access = current_access(request_for(alice, str(org.code)))
    assert access is not None
    assert (access.organization, access.role) == (org, "owner")


def test_it_falls_back_to_the_first_organization_in_one_query(bob, org, other_org, django_assert_num_queries):
    request = request_for(bob, str(other_org.code))  # bob is not (or no longer) a member of it
    with django_assert_num_queries(1):
        access = current_access(request)
    assert access is not None
    assert (access.organization, access.role, access.can_write) == (org, "viewer", False)
    assert request.session[SESSION_KEY] == str(org.code)
    with django_assert_num_queries(1):
        fallback = current_access(request_for(bob, "not-a-uuid"))
        assert fallback is not None and fallback.organization == org


def test_it_makes_a_superuser_owner_of_any_organization(org, other_org, django_assert_num_queries):
    root = get_user_model().objects.create_superuser("root", password="password")
    with django_assert_num_queries(1):
        access = current_access(request_for(root, str(other_org.code)))
    assert access is not None
    assert (access.organization, access.role) == (other_org, "owner")


def test_it_gives_no_access_without_an_organization(org, django_assert_num_queries):
    loner = get_user_model().objects.create_user("dave", password="password")
    with django_assert_num_queries(1):
        assert current_access(request_for(loner, str(org.code))) is None
    with django_assert_num_queries(0):
        assert current_access(request_for(AnonymousUser())) is None
