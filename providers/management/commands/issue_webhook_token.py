from django.core.management.base import BaseCommand, CommandError

from providers.management.lookup import get_provider


class Command(BaseCommand):
    help = (
        "Issue (or replace) a provider's inbound webhook token and print the webhook path, once. "
        "Give ComfyDeploy https://<your host><path> as the run's webhook URL."
    )

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("provider_name")

    def handle(self, *args, org_slug, provider_name, **options):
        provider = get_provider(org_slug, provider_name)
        if provider.kind != "comfydeploy":
            raise CommandError(f"{provider.kind_label} sends no webhooks; only ComfyDeploy providers take a token.")
        token = provider.issue_webhook_token()
        self.stdout.write(f"/api/v1/hooks/comfydeploy/{provider.code}/{token}")
