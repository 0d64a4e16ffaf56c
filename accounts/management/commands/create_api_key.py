from django.core.management.base import BaseCommand, CommandError

from accounts.management.lookup import get_org
from accounts.models import ApiKey


class Command(BaseCommand):
    help = "Create an organization API key and print it (shown once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("name")
        parser.add_argument("--read-only", action="store_true")

    def handle(self, *args, org_slug, name, read_only, **options):
        org = get_org(org_slug)
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("NAME must be 1 to 100 characters.")
        _, plain = ApiKey.issue(org, name, read_only=read_only)
        self.stdout.write(plain)
