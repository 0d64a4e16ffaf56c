"""`manage.py verify_outputs`: check the bytes of archived outputs whose type nothing has verified.

Such outputs (stored by an archive that did not read their bytes) are served as downloads only: their
type is only the provider's say. This reads each stored file once, as the archive does for every new
output (runs.content), and records the type its bytes show: verified images, video and audio are shown
in the browser. Safe to run again; it only looks at outputs not yet verified.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from django.core.management.base import BaseCommand

from runs.content import sniff
from runs.models import RunOutput


class Command(BaseCommand):
    help = "Check the bytes of archived outputs not verified yet, so verified media show inline again."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=0, help="check at most this many outputs (0: all)")

    def handle(self, *args, limit, **options):
        pending = RunOutput.objects.filter(content_verified=False, archived__isnull=False).exclude(file="")
        pending = pending.order_by("pk").only("pk", "file", "content_type")
        counts = {"verified": 0, "download only": 0, "missing": 0}
        for output in pending[:limit] if limit else pending.iterator():
            try:
                sniffed = _sniff_stored(output.file)
            except OSError:
                counts["missing"] += 1
                continue
            RunOutput.objects.filter(pk=output.pk).update(
                content_type=sniffed.content_type, content_verified=sniffed.verified
            )
            counts["verified" if sniffed.verified else "download only"] += 1
        self.stdout.write(", ".join(f"{n} {what}" for what, n in counts.items()))


def _sniff_stored(field):
    """Copy the stored file to a local temporary file (storage may be remote) and check its bytes."""
    with field.open("rb") as source, tempfile.NamedTemporaryFile(delete=False) as local:
        shutil.copyfileobj(source, local)
    try:
        return sniff(local.name)
    finally:
        os.unlink(local.name)
