"""Lookups shared by the management commands, failing with one clear line."""

from django.core.management.base import CommandError

from accounts.models import Organization


def get_org(slug: str) -> Organization:
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        raise CommandError(f"no organization {slug!r} (create it with create_org).")
    return org
