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
