"""docs/api.md's curl session works as written: each command is parsed as a shell would, and replayed
through the test client (the URL wiring, auth and body parsing are the real ones; the providers are the
fake server over loopback HTTP)."""

from __future__ import annotations

import io
import json
import re
import shlex
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

from providers.fake import state as S
from runs.models import Run, Status
from runs.tests.sync_helpers import sweep

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
WORKFLOW_API_JSON = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0], "positive": ["6", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "docs"}},
}


def curl_session() -> list[str]:
    """The commands of the "A curl session" block, continuation lines joined."""
    text = DOC.read_text()
    block = re.search(r"### A curl session\s+```sh\n(.*?)```", text, re.S)
    assert block, "docs/api.md has no curl session block"
    return [line.strip() for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def expand(command: str, env: dict[str, str]) -> list[str]:
    # The file's text, quoted as the shell passes a command substitution inside double quotes.
    text = json.dumps(WORKFLOW_API_JSON).replace("\\", "\\\\").replace('"', '\\"')
    command = command.replace("$(cat workflow_api.json)", text)
    return shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], command))


def replay(client, words: list[str], api: str):
    """One `curl` command through the Django test client, with curl's defaults: a `-d` body makes it a
    POST labelled application/x-www-form-urlencoded unless a Content-Type header says otherwise."""
    assert words[0] == "curl"
    method, headers, data, url, words = None, {}, None, None, words[1:]
    while words:
        word = words.pop(0)
        if word in ("-s", "-sL", "-L"):
            continue
        if word == "-H":
            name, _, value = words.pop(0).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = words.pop(0)
        elif word == "-X":
            method = words.pop(0)
        elif word == "-o":
            words.pop(0)
        else:
            assert url is None, f"unexpected curl argument {word!r}"
            url = word
    assert url and url.startswith(api)
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    method = method or ("POST" if data is not None else "GET")
    content_type = headers.pop("Content-Type", "application/x-www-form-urlencoded")
    kwargs = {"data": data, "content_type": content_type} if data is not None else {}
    return getattr(client, method.lower())(path, headers=headers, **kwargs)


@pytest.fixture
def docs_setup(org, make_provider, fake):
    make_provider(
        org, "Deploy", "comfydeploy", fake.base_url("comfydeploy"), fake.secret("comfydeploy"), {"deployment_id": "d1"}
    )
    make_provider(org, "Local", "comfyui", fake.base_url("comfyui"), {})
    fake.state.default_script = ((0.0, S.QUEUED), (0.05, S.RUNNING), (0.1, S.SUCCEEDED))


def test_the_docs_curl_session_works_as_written(client, docs_setup, fake):
    env: dict[str, str] = {}
    answers = []
    for command in curl_session():
        if command.startswith("KEY=$(python manage.py create_api_key "):
            args = shlex.split(command.removeprefix("KEY=$(python manage.py ").split("|")[0].rstrip(") "))
            out = io.StringIO()
            call_command(*args, stdout=out)
            env["KEY"] = out.getvalue().strip().splitlines()[-1]
            continue
        if command.startswith("API="):
            env["API"] = command.removeprefix("API=")
            continue
        response = replay(client, expand(command, env), env["API"])
        assert response.status_code in (200, 201, 302), (command, response.content[:300])
        answers.append((command, response))
        if urlsplit(expand(command, env)[-1]).path.endswith("/runs") and response.status_code == 201:
            run = response.json()
            assert run["status"] == "pending" and run["provider"]["name"] == "Deploy", run
            env["RUN_ID"] = run["id"]
            time.sleep(0.2)  # the fake finishes it; one sweep records it and its output
            sweep()
            finished = Run.objects.get(code=run["id"])
            assert finished.status == Status.SUCCEEDED and finished.n_outputs
            output = finished.outputs.first()
            assert output is not None
            env["OUTPUT_ID"] = str(output.code)
    # The retry's body was read: the new run went to "Local", not to the original's provider.
    retry = answers[-1][1].json()
    assert answers[-1][0].startswith("curl") and "/retry" in answers[-1][0]
    assert retry["provider"]["name"] == "Local" and retry["retry_of"] == env["RUN_ID"]


def test_a_json_body_without_a_content_type_is_still_read(client, docs_setup, org, alice, fake):
    from accounts.models import ApiKey

    key = ApiKey.issue(org, "t", created_by=alice)[1]
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {}}, "9": {"class_type": "SaveImage", "inputs": {}}}
    original = Run.objects.create(
        organization=org, provider=org.providers.get(name="Deploy"), workflow=workflow, status=Status.FAILED
    )
    response = client.post(
        f"/api/v1/runs/{original.code}/retry",
        data='{"provider": "Local"}',
        content_type="application/x-www-form-urlencoded",
        headers={"X-API-Key": key},
    )
    assert response.status_code == 201 and response.json()["provider"]["name"] == "Local"
