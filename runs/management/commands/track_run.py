from django.core.management.base import BaseCommand, CommandError

from accounts.management.lookup import get_org
from providers.models import Provider
from runs.tracking import external_id_problem, track_run


class Command(BaseCommand):
    help = "Register an existing provider run so comfytrack keeps it in sync; prints the run code."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("provider_name")
        parser.add_argument("external_id")

    def handle(self, *args, org_slug, provider_name, external_id, **options):
        org = get_org(org_slug)
        provider = Provider.objects.filter(organization=org, name=provider_name).first()
        if provider is None:
            raise CommandError(f"{org.slug} has no provider named {provider_name!r}.")
        external_id = external_id.strip()
        if problem := external_id_problem(external_id):
            raise CommandError(f"EXTERNAL_ID {problem}: 1 to 200 characters without spaces or control characters.")
        run, _ = track_run(provider, external_id)
        self.stdout.write(str(run.code))
