"""Provider client registry: kind -> dotted path, imported lazily."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers.clients.base import ProviderClient

CLIENTS: dict[str, str] = {
    "comfydeploy": "providers.clients.comfydeploy.ComfyDeployClient",
    "comfycloud": "providers.clients.comfycloud.ComfyCloudClient",
    "comfyui": "providers.clients.comfyui.ComfyUIClient",
    "aws_esd": "providers.clients.aws_esd.AwsEsdClient",
    "speedpix": "providers.clients.speedpix.SpeedPixClient",
}

KIND_LABELS: dict[str, str] = {
    "comfydeploy": "ComfyDeploy",
    "comfycloud": "Comfy Cloud",
    "comfyui": "ComfyUI (self-hosted)",
    "aws_esd": "AWS Extension for Stable Diffusion",
    "speedpix": "Alibaba Cloud SpeedPix",
}


@cache
def client_class(kind: str) -> type[ProviderClient]:
    try:
        dotted = CLIENTS[kind]
    except KeyError:
        raise LookupError(f"unknown provider kind {kind!r} (known: {', '.join(CLIENTS)})") from None
    module_name, _, class_name = dotted.rpartition(".")
    return getattr(import_module(module_name), class_name)
