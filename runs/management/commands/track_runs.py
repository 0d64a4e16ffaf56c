"""`track_runs ORG PROVIDER --file ids.txt`: register many runs submitted elsewhere, 1,000 per statement."""

from __future__ import annotations

import sys
from itertools import batched

from django.core.management.base import BaseCommand, CommandError

from providers.management.lookup import get_provider
from runs.tracking import MAX_TRACK_IDS, read_external_ids, track_runs

MAX_FILE_BYTES = 50_000_000


class Command(BaseCommand):
    help = (
        "Register runs that already exist on a provider, one id per line (or a CSV with an external_id "
        "column); refused ids are reported one per line on stderr, the last line of stdout is the summary."
    )

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("provider_name")
        parser.add_argument("--file", required=True, help="A file of ids, or - for standard input.")

    def handle(self, *args, org_slug, provider_name, file, **options):
        provider = get_provider(org_slug, provider_name)
        if not provider.is_active:
            raise CommandError(f"provider {provider.name!r} is disabled.")
        ids = read_external_ids(_read_text(file))
        if not ids:
            raise CommandError(f"no ids in {'standard input' if file == '-' else file}.")
        created = existing = refused = 0
        for chunk in batched(ids, MAX_TRACK_IDS):
            for result in track_runs(provider, chunk):
                if result.error:
                    refused += 1
                    self.stderr.write(f"{result.external_id[:80]!r}: {result.error}")
                elif result.created:
                    created += 1
                else:
                    existing += 1
        self.stdout.write(
            f"{len(ids):,} ids: {created:,} newly tracked, {existing:,} already tracked, {refused:,} refused"
        )
        if refused:
            raise CommandError(f"{refused:,} ids refused (listed above).", returncode=1)


def _read_text(path: str) -> str:
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}.") from None
    if len(raw) > MAX_FILE_BYTES:
        raise CommandError(f"{path} is over {MAX_FILE_BYTES // 1_000_000} MB.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text.") from None
