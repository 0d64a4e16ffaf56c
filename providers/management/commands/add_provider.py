from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator
from django.db import transaction
from pydantic import ValidationError as PydanticValidationError

from accounts.management.lookup import get_org
from providers.clients import CLIENTS, client_class
from providers.models import Credential, Provider


def parse_pairs(pairs: list[str], option: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"{option} takes KEY=VALUE, got {pair.split('=')[0]!r}…")
        if key.strip() in values:
            raise CommandError(f"{option} {key.strip()} is given twice.")
        values[key.strip()] = value
    return values


class Command(BaseCommand):
    help = "Add a provider (and its credential) to an organization; prints the provider code."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("name")
        parser.add_argument("--kind", required=True, help=f"one of: {', '.join(CLIENTS)}")
        parser.add_argument("--base-url", default="", help="the provider's API base, path included")
        parser.add_argument("--secret", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")

    def handle(self, *args, org_slug, name, kind, base_url, secret, config, **options):
        if kind not in CLIENTS:
            raise CommandError(f"unknown kind {kind!r}: use one of {', '.join(CLIENTS)}.")
        org = get_org(org_slug)
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("NAME must be 1 to 100 characters.")
        if Provider.objects.filter(organization=org, name=name).exists():
            raise CommandError(f"{org.slug} already has a provider named {name!r}.")
        cls = client_class(kind)
        base_url = base_url.strip().rstrip("/")
        if base_url:
            try:
                URLValidator(schemes=["http", "https"])(base_url)
            except ValidationError:
                raise CommandError(f"--base-url {base_url!r} is not an http(s) URL.") from None
        elif not cls.default_base_url:
            raise CommandError(f"{cls.label} has no public endpoint: give --base-url.")
        secrets = parse_pairs(secret, "--secret")
        self.check_secret_keys(cls, secrets)
        with transaction.atomic():
            provider = Provider.objects.create(
                organization=org, name=name, kind=kind, base_url=base_url, config=parse_pairs(config, "--config")
            )
            credential = Credential(provider=provider, name="default")
            credential.set_secret(secrets)
            credential.save()
        self.stdout.write(str(provider.code))

    def check_secret_keys(self, cls, secrets: dict[str, str]) -> None:
        allowed = list(cls.Secret.model_fields)
        unknown = sorted(set(secrets) - set(allowed))
        if unknown:
            raise CommandError(
                f"{cls.label} takes no secret {', '.join(unknown)} (it takes: {', '.join(allowed) or 'none'})."
            )
        try:
            cls.Secret.model_validate(secrets)
        except PydanticValidationError as exc:
            missing = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]}) or ["secret"]
            raise CommandError(f"{cls.label} needs --secret {' and '.join(f'{m}=…' for m in missing)}.") from None
