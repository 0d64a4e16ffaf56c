"""The out-of-the-box demo: a "Simulator" provider (the project's fake provider server), a Demo
organization using it, and a trickle of demo runs — some succeed with real PNG outputs, some fail
with node errors — so a newcomer sees live runs, a gallery and stats within a minute.

Started by `make run` through `manage.py demo` when `settings.COMFYTRACK_DEMO` is on (default: on
with DEBUG, off otherwise). Plain functions; the management command owns the loop.
"""

from __future__ import annotations

import random
from typing import Any

from django.contrib.auth import get_user_model

from accounts.models import Membership, Organization
from providers.fake.state import QUEUED, RUNNING, SUCCEEDED, FakeState
from providers.models import Credential, Provider
from runs.models import Origin, Run
from runs.submission import submit_run

DEMO_SLUG = "demo"
SIMULATOR_NAME = "Simulator"
PROMPTS = (
    "a lighthouse on a cliff at dusk, volumetric light",
    "a red fox in fresh snow, 85mm photo",
    "isometric cozy library, warm lamps, pixel art",
    "portrait of an astronaut made of flowers",
    "neon rain over a tokyo alley, cinematic",
    "watercolor map of an imaginary island",
)
CHECKPOINTS = ("sdxl_base_1.0.safetensors", "juggernautXL_v9.safetensors", "flux1-dev-fp8.safetensors")
FAILURE_RATE = 0.25


def ensure_demo(simulator_base_url: str) -> Provider:
    """Create (or point at the current port) the Demo organization and its Simulator provider.

    Every superuser becomes an owner of the Demo organization, so the admin login `make run`
    prints sees it at once.
    """
    org, _ = Organization.objects.get_or_create(slug=DEMO_SLUG, defaults={"name": "Demo"})
    provider, created = Provider.objects.get_or_create(
        organization=org, name=SIMULATOR_NAME, defaults={"kind": "comfyui", "base_url": simulator_base_url}
    )
    if provider.base_url != simulator_base_url:
        Provider.objects.filter(pk=provider.pk).update(base_url=simulator_base_url)
        provider.base_url = simulator_base_url
    if created or not provider.credentials.exists():
        credential = Credential(provider=provider, name="default")
        credential.set_secret({})
        credential.save()
    for user in get_user_model().objects.filter(is_superuser=True):
        Membership.objects.get_or_create(organization=org, user=user, defaults={"role": Membership.Role.OWNER})
    return provider


def demo_workflow(rng: random.Random, *, fail: bool) -> dict[str, Any]:
    """An API-format text-to-image workflow; a FakeFail node makes the Simulator fail it on node 3."""
    workflow: dict[str, Any] = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": rng.randrange(2**32),
                "steps": rng.choice((20, 25, 30)),
                "cfg": rng.choice((5.5, 7.0)),
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": rng.choice(CHECKPOINTS)}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": rng.choice(PROMPTS), "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, lowres", "clip": ["4", 1]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "demo", "images": ["8", 0]}},
    }
    if fail:
        workflow["10"] = {"class_type": "FakeFail", "inputs": {}}
    return workflow


def submit_demo_run(provider: Provider, state: FakeState | None, rng: random.Random) -> Run:
    """Submit one demo run; with the Simulator's state at hand, vary how long it queues and runs."""
    if state is not None:
        queue, run = rng.uniform(0.5, 6.0), rng.uniform(5.0, 25.0)
        state.default_script = ((0.0, QUEUED), (queue, RUNNING), (queue + run, SUCCEEDED))
    return submit_run(provider, demo_workflow(rng, fail=rng.random() < FAILURE_RATE), origin=Origin.DEMO)
