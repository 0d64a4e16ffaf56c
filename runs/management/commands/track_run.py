from django.core.management.base import BaseCommand, CommandError

from providers.management.lookup import get_provider
from runs.tracking import external_id_problem, track_run


class Command(BaseCommand):
    help = "Register an existing provider run so comfytrack keeps it in sync; prints the run code."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("provider_name")
        parser.add_argument("external_id")

    def handle(self, *args, org_slug, provider_name, external_id, **options):
        provider = get_provider(org_slug, provider_name)
        external_id = external_id.strip()
        if problem := external_id_problem(external_id):
            raise CommandError(f"EXTERNAL_ID {problem}: 1 to 200 characters without spaces or control characters.")
        run, _ = track_run(provider, external_id)
        self.stdout.write(str(run.code))
