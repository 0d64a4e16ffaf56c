from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

from accounts.models import Membership, Organization


class Command(BaseCommand):
    help = "Create an organization with an existing user as its owner; prints the organization code."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--owner", required=True, help="username of the owner (must exist)")
        parser.add_argument("--name", default="")

    def handle(self, *args, slug, owner, name, **options):
        if slugify(slug) != slug or not slug:
            raise CommandError(
                f"SLUG {slug!r} must be lowercase letters, digits and hyphens (e.g. {slugify(slug) or 'acme'!r})."
            )
        user = get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user {owner!r}: create it first with create_user.")
        if Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"organization {slug!r} already exists.")
        with transaction.atomic():
            org = Organization.objects.create(slug=slug, name=name or slug)
            Membership.objects.create(organization=org, user=user, role=Membership.Role.OWNER)
        self.stdout.write(str(org.code))
