"""Property test: schemathesis fuzzes every operation of our own OpenAPI document, in-process (WSGI),
with a valid API key. No 5xx, and every response matches the documented status codes, content types
and schemas."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from comfytrack.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def in_process_requests():
    """Like Django's test client: a request must not close the test's connection (it is inside the test
    transaction, and Django closes connections at the end of each request it sees as stale)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_key(org, provider, make_run, settings, in_process_requests):
    from accounts.models import ApiKey

    settings.COMFYTRACK_API_RATE = "100000/min"
    make_run(provider)
    return ApiKey.issue(org, "fuzz")[1]


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_it_survives_fuzzing(case, api_key):
    case.call_and_validate(headers={"X-API-Key": api_key}, checks=CHECKS)


# The public interface docs/api.md documents: an operation added, renamed or dropped must change the
# documentation (and this list) with it.
DOCUMENTED_OPERATIONS = {
    ("GET", "/api/v1/alerts/channels"),
    ("POST", "/api/v1/alerts/channels"),
    ("GET", "/api/v1/alerts/channels/{channel_id}"),
    ("PATCH", "/api/v1/alerts/channels/{channel_id}"),
    ("DELETE", "/api/v1/alerts/channels/{channel_id}"),
    ("GET", "/api/v1/alerts/rules"),
    ("POST", "/api/v1/alerts/rules"),
    ("GET", "/api/v1/alerts/rules/{rule_id}"),
    ("PATCH", "/api/v1/alerts/rules/{rule_id}"),
    ("DELETE", "/api/v1/alerts/rules/{rule_id}"),
    ("POST", "/api/v1/alerts/rules/{rule_id}/mute"),
    ("POST", "/api/v1/alerts/rules/{rule_id}/test"),
    ("POST", "/api/v1/hooks/comfydeploy/{provider_id}/{token}"),
    ("GET", "/api/v1/outputs/{output_id}/file"),
    ("GET", "/api/v1/providers"),
    ("GET", "/api/v1/runs"),
    ("POST", "/api/v1/runs"),
    ("GET", "/api/v1/runs/export"),
    ("POST", "/api/v1/runs/track"),
    ("GET", "/api/v1/runs/{run_id}"),
    ("POST", "/api/v1/runs/{run_id}/cancel"),
    ("GET", "/api/v1/runs/{run_id}/events"),
    ("GET", "/api/v1/runs/{run_id}/outputs"),
    ("POST", "/api/v1/runs/{run_id}/retry"),
    ("POST", "/api/v1/runs/{run_id}/sync"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/workflows"),
    ("GET", "/api/v1/workflows/{fingerprint}/compare"),
    ("PUT", "/api/v1/workflows/{fingerprint}/label"),
}


def test_it_documents_every_operation():
    operations = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the schema fails to describe
        operations.add((result.ok().method.upper(), result.ok().path))
    assert operations == DOCUMENTED_OPERATIONS
