"""Calls to the JSON API through Django's test client, for the API's tests (`test_api_runs`,
`test_api_contract`): the path under `/api/v1`, the key in `X-API-Key`, a body sent as JSON."""

from __future__ import annotations


def call(client, method: str, path: str, key: str | None = None, data=None, **headers):
    if key:
        headers["X-API-Key"] = key
    kwargs = {"content_type": "application/json"} if data is not None else {}
    return getattr(client, method)(f"/api/v1{path}", data=data, headers=headers, **kwargs)


def get(client, path, key=None, **headers):
    return call(client, "get", path, key, **headers)


def post(client, path, key=None, data=None, **headers):
    return call(client, "post", path, key, data, **headers)
