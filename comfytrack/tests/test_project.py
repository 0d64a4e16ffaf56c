"""Project-level guarantees: versions, migrations complete, deploy checks clean."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import django
import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def test_it_runs_on_django_6():
    assert django.VERSION >= (6, 0)


@pytest.mark.django_db
def test_every_model_change_has_a_migration():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_the_deploy_check_reports_no_warnings_with_production_settings(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
        "COMFYTRACK_ENCRYPTION_KEYS": "Vy3E8jzT0ZkM4m7lQb8r8wJ8d0m8r5mQ2Vq7xJk9T3Y=",
        "ALLOWED_HOSTS": "comfytrack.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "COMFYTRACK_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("migration", "func"),
    [
        ("runs.migrations.0002_sync_schedule", "runs.tasks.sync_loop"),
        ("runs.migrations.0005_archive_schedule", "runs.tasks.archive_loop"),
        ("webhooks.migrations.0002_delivery_schedule", "webhooks.delivery.deliver_loop"),
    ],
)
def test_migrations_install_each_background_loop_as_its_own_schedule(migration, func):
    # The rows themselves are flushed by transactional tests, so run the migrations' own step again:
    # it must (re)create exactly one schedule per loop, however often it runs.
    from importlib import import_module

    from django.apps import apps
    from django_q.models import Schedule

    install = import_module(migration).install
    install(apps, None)
    install(apps, None)
    schedule = Schedule.objects.get(func=func)
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 1, -1)
