"""Lookups shared by the management commands that act on one provider, failing with one clear line."""

from django.core.management.base import CommandError

from accounts.management.lookup import get_org
from providers.models import Provider


def get_provider(org_slug: str, name: str) -> Provider:
    """The provider called `name` in the organization `org_slug`."""
    org = get_org(org_slug)
    provider = Provider.objects.filter(organization=org, name=name).first()
    if provider is None:
        raise CommandError(f"{org.slug} has no provider named {name!r}.")
    return provider
