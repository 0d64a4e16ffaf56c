from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.management.lookup import get_org
from accounts.models import Membership


class Command(BaseCommand):
    help = "Add a user to an organization with a role (or change their role)."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=Membership.Role.values)

    def handle(self, *args, org_slug, username, role, **options):
        org = get_org(org_slug)
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}: create it first with create_user.")
        membership, created = Membership.objects.update_or_create(organization=org, user=user, defaults={"role": role})
        verb = "Added" if created else "Updated"
        self.stdout.write(f"{verb} {user.username} in {org.slug} as {membership.role}")
