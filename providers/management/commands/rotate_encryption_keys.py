from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from providers.crypto import UnreadableSecret
from providers.models import Credential


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored credential secret under the first key of COMFYTRACK_ENCRYPTION_KEYS. "
        "Put the new key first, run this, then drop the old key."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            credentials = list(Credential.objects.select_for_update().select_related("provider"))
            unreadable = [c for c in credentials if isinstance(c.secret, UnreadableSecret)]
            if unreadable:
                names = ", ".join(f"{c.provider.name}/{c.name}" for c in unreadable[:5])
                raise CommandError(
                    f"{len(unreadable)} credential(s) cannot be decrypted with any configured key ({names}); "
                    "nothing was changed. Add back the key that encrypted them, or re-enter those secrets."
                )
            for credential in credentials:
                # Saving re-encrypts with MultiFernet's first key (a fresh token, so it is also re-randomised).
                credential.save(update_fields=["secret"])
        self.stdout.write(f"Re-encrypted {len(credentials)} credential(s) under the first key")
