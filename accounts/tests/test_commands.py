"""Every management command: its success path, and bad input giving one line and writing nothing."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey, Membership, Organization
from providers.models import Credential, Provider
from runs.models import Run

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def fails(*args: str, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        call_command(*args, stdout=StringIO())


@pytest.fixture
def acme(db):
    get_user_model().objects.create_user("owner")
    run("create_org", "acme", "--owner", "owner", "--name", "Acme Inc")
    return Organization.objects.get(slug="acme")


def test_create_user_uses_the_environment_password(db, monkeypatch):
    monkeypatch.setenv("COMFYTRACK_PASSWORD", "s3cret-pass")
    assert run("create_user", "dana", "--email", "dana@example.com") == "Created user dana"
    assert get_user_model().objects.get(username="dana").check_password("s3cret-pass")


def test_create_user_prints_a_generated_password_once(db, monkeypatch):
    monkeypatch.delenv("COMFYTRACK_PASSWORD", raising=False)
    out = StringIO()
    call_command("create_user", "erin", stdout=out)
    password = out.getvalue().split("Password (shown once): ")[1].split()[0]
    assert get_user_model().objects.get(username="erin").check_password(password)


def test_create_user_refuses_duplicates_and_bad_emails(db):
    run("create_user", "dana")
    fails("create_user", "dana", match="already exists")
    fails("create_user", "fred", "--email", "not-an-email", match="not a valid email")
    assert not get_user_model().objects.filter(username="fred").exists()


def test_create_org_prints_the_code_and_makes_the_owner(acme):
    owner = Membership.objects.get(organization=acme)
    assert (owner.user.username, owner.role) == ("owner", "owner")
    assert acme.name == "Acme Inc"


def test_create_org_bad_input(acme):
    fails("create_org", "acme", "--owner", "owner", match="already exists")
    fails("create_org", "new-org", "--owner", "nobody", match="no user 'nobody'")
    fails("create_org", "Bad Slug", "--owner", "owner", match="lowercase")
    assert Organization.objects.count() == 1


def test_add_member_adds_and_changes_roles(acme):
    get_user_model().objects.create_user("bob")
    assert run("add_member", "acme", "bob", "--role", "viewer") == "Added bob in acme as viewer"
    assert run("add_member", "acme", "bob", "--role", "admin") == "Updated bob in acme as admin"
    fails("add_member", "nope", "bob", "--role", "admin", match="no organization 'nope'")
    fails("add_member", "acme", "ghost", "--role", "admin", match="no user 'ghost'")


def test_add_provider_stores_an_encrypted_credential(acme):
    code = run(
        "add_provider",
        "acme",
        "Deploy",
        "--kind",
        "comfydeploy",
        "--secret",
        "token=cd-tok-9876",
        "--config",
        "deployment_id=dep-1",
    )
    provider = Provider.objects.get(code=code)
    assert (provider.kind, provider.config, provider.effective_base_url) == (
        "comfydeploy",
        {"deployment_id": "dep-1"},
        "https://api.comfydeploy.com/api",
    )
    assert provider.credentials.get().plain_secret() == {"token": "cd-tok-9876"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "replicate"], "unknown kind 'replicate'"),
        (["--kind", "comfydeploy"], "needs --secret token="),
        (["--kind", "comfydeploy", "--secret", "api_key=x"], "takes no secret api_key"),
        (["--kind", "aws_esd", "--secret", "api_key=x"], "no public endpoint: give --base-url"),
        (["--kind", "comfyui", "--base-url", "ftp://host"], "not an http"),
        (["--kind", "speedpix", "--secret", "app_key=k"], "needs --secret app_secret="),
        (["--kind", "comfydeploy", "--secret", "token"], "KEY=VALUE"),
    ],
)
def test_add_provider_bad_input_writes_nothing(acme, args, message):
    fails("add_provider", "acme", "P", *args, match=message)
    assert not Provider.objects.exists() and not Credential.objects.exists()


def test_add_provider_refuses_a_duplicate_name_and_unknown_org(acme):
    run("add_provider", "acme", "Local", "--kind", "comfyui")
    fails("add_provider", "acme", "Local", "--kind", "comfyui", match="already has a provider named 'Local'")
    fails("add_provider", "ghost-org", "X", "--kind", "comfyui", match="no organization 'ghost-org'")
    assert Provider.objects.count() == 1


def test_create_api_key_prints_it_once_and_stores_only_a_hash(acme):
    plain = run("create_api_key", "acme", "ci", "--read-only")
    key = ApiKey.objects.get()
    assert plain.startswith("ct_") and plain not in (key.key_hash, key.prefix)
    assert key.read_only
    assert ApiKey.objects.authenticate(plain) == key
    assert ApiKey.objects.authenticate(plain + "x") is None
    key.revoke()
    assert ApiKey.objects.authenticate(plain) is None


def test_track_run_creates_a_due_run_and_is_idempotent(acme):
    run("add_provider", "acme", "Local", "--kind", "comfyui")
    code = run("track_run", "acme", "Local", "abc-123")
    assert run("track_run", "acme", "Local", "abc-123") == code
    tracked = Run.objects.get(code=code)
    assert (tracked.status, tracked.external_id, tracked.origin) == ("pending", "abc-123", "tracked")
    assert tracked.next_sync_after is not None
    fails("track_run", "acme", "Nope", "x", match="no provider named 'Nope'")
    fails("track_run", "acme", "Local", "has space", match="without spaces")
    fails("track_run", "acme", "Local", "esc\x1b[31m", match="control characters")


def test_sync_runs_once_exits_cleanly_with_nothing_due(db):
    assert run("sync_runs", "--once").startswith("Synced 0 run(s)")


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_bad_encryption_key_is_one_clear_line_without_a_traceback(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "SECRET_KEY": "x" * 50,
        "COMFYTRACK_ENCRYPTION_KEYS": "not-a-key",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
    }
    result = manage("sync_runs", "--once", env=env)
    assert result.returncode != 0
    assert "key 1 of 1 is not a valid Fernet key" in result.stderr
    assert "Traceback" not in result.stderr and "not-a-key" not in result.stderr


def test_a_missing_secret_key_with_debug_off_refuses_to_start(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr and "Traceback" not in result.stderr


def test_bad_command_input_prints_one_line(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "true",
        "COMFYTRACK_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
    }
    assert manage("migrate", "-v", "0", env=env).returncode == 0
    result = manage("add_provider", "nope", "X", "--kind", "comfyui", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: no organization 'nope' (create it with create_org)."


def test_issue_webhook_token_prints_a_working_path_once(acme, client):
    code = run("add_provider", "acme", "Deploy", "--kind", "comfydeploy", "--secret", "token=cd-tok-9876")
    path = run("issue_webhook_token", "acme", "Deploy")
    provider = Provider.objects.get(code=code)
    token = path.rsplit("/", 1)[1]
    assert path.startswith(f"/api/v1/hooks/comfydeploy/{code}/") and provider.check_webhook_token(token)
    assert token not in provider.webhook_token_hash
    fails("issue_webhook_token", "acme", "Nope", match="no provider named 'Nope'")
    run("add_provider", "acme", "Local", "--kind", "comfyui")
    fails("issue_webhook_token", "acme", "Local", match="sends no webhooks")
