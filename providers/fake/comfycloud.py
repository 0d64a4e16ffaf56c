"""Fake comfycloud API (to be filled in)."""

from aiohttp import web


def setup(app: web.Application, state: object) -> None:
    pass
