"""Shared client helpers: JSON bodies and content types (pure functions, no HTTP)."""

from __future__ import annotations

import mimetypes
from urllib.parse import urlencode

import pytest
from multidict import CIMultiDict

from providers.clients.base import ProviderError, content_type_for, view_query
from providers.clients.comfycloud import ComfyCloudClient
from providers.clients.transport import ProviderResponse


def parse(content: bytes) -> object:
    client = ComfyCloudClient("https://cloud.comfy.org", {"api_key": "k"}, {"api": "v1"})
    response = ProviderResponse(
        status_code=200, headers=CIMultiDict(), content=content, method="GET", url="https://cloud.comfy.org/api/jobs"
    )
    return client.json(response)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        (b'{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),  # beyond 64 bits
        (b'{"s": "\\ud800"}', {"s": "\ud800"}),  # a lone surrogate escape
        (b'{"k": 1, "k": 2}', {"k": 2}),  # the last duplicate wins, as with the standard library
    ],
)
def test_json_bodies_parse_as_the_standard_library_parses_them(body: bytes, expected: object) -> None:
    assert parse(body) == expected


@pytest.mark.parametrize("body", [b"<html>502</html>", b'{"a": ', b"\xff\xfe"])
def test_a_body_that_is_not_json_is_a_provider_error(body: bytes) -> None:
    with pytest.raises(ProviderError, match="not valid JSON"):
        parse(body)


@pytest.mark.parametrize(
    "filename",
    [
        "ComfyUI_00001_.png",
        "clip.MP4",
        "a.tar.gz",
        "sound.flac",
        "model.glb",
        "notes.txt",
        "no_suffix",
        "x.unknownext",
        "dir/sub.dir/file.webp",
        ".hidden",
        ".png",
        "x/.hidden.png",
        "archive.json.gz",
        "IMG.JPEG",
    ],
)
def test_content_types_are_the_ones_mimetypes_guesses(filename: str) -> None:
    assert content_type_for(filename) == mimetypes.guess_type(filename)[0]


@pytest.mark.parametrize(
    ("filename", "subfolder", "folder_type"),
    [("ComfyUI_00001_.png", "", "output"), ("a b&c=d/é.png", "sub/dir?x", "temp"), ("100%+.webp", "#", "in put")],
)
def test_view_queries_are_what_urlencode_gives(filename: str, subfolder: str, folder_type: str) -> None:
    expected = urlencode({"filename": filename, "subfolder": subfolder, "type": folder_type})
    assert view_query(filename, subfolder, folder_type) == expected
