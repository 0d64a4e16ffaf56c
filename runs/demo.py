"""The out-of-the-box demo: a "Simulator" provider (the project's fake provider server), a Demo
organization using it, and a trickle of demo runs — most succeed with real PNG outputs, about a quarter
fail the ways real runs do (out of memory, a missing model file, a validation error, a node exception,
a timeout) — so a newcomer sees live runs, a gallery and stats within a minute.

Started by `make run` through `manage.py demo` when `settings.COMFYTRACK_DEMO` is on (default: on
with DEBUG, off otherwise). Plain functions; the management command owns the loop.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model

from accounts.models import Membership, Organization
from insights.models import Price
from providers.fake.state import DEFAULT_SECRETS, FAILED, QUEUED, RUNNING, SUCCEEDED, FakeState
from providers.models import Credential, Provider
from runs.models import Origin, Run
from runs.submission import submit_run

DEMO_SLUG = "demo"
SIMULATOR_NAME = "Simulator"
CLOUD_NAME = "Simulator Cloud"
# What the demo's providers charge per GPU-second (an admin's price: the runs' costs are estimates).
DEMO_PRICES = {SIMULATOR_NAME: Decimal("0.00030"), CLOUD_NAME: Decimal("0.00110")}
# The Simulator Cloud queues less and runs faster than the Simulator (a self-hosted PC), by these factors.
CLOUD_SPEED = (0.3, 0.6)
PROMPTS = (
    "a lighthouse on a cliff at dusk, volumetric light",
    "a red fox in fresh snow, 85mm photo",
    "isometric cozy library, warm lamps, pixel art",
    "portrait of an astronaut made of flowers",
    "neon rain over a tokyo alley, cinematic",
    "watercolor map of an imaginary island",
)
# About a quarter of demo runs fail, in the ways real ones do (weights: how often each, among failures).
FAILURE_RATE = 0.25
FAILURES = {
    "out_of_memory": 3,  # torch.OutOfMemoryError on the KSampler
    "missing_model": 2,  # the checkpoint file is gone (FileNotFoundError)
    "node_exception": 2,  # RuntimeError in VAEDecode
    "timeout": 1,  # never finishes: comfytrack times it out
}
# Besides, now and then a submission is refused at validation (a custom node the Simulator lacks): that
# leaves no run (a 422), so it is counted apart from the runs' failure rate.
REFUSAL_RATE = 0.05
# The custom node the Simulator does not have (ComfyUI_IPAdapter_plus's).
MISSING_NODE = "IPAdapterAdvanced"
# The Simulator's runs that never finish are timed out after this long (a real provider's limit is hours).
SIMULATOR_MAX_RUN_HOURS = 0.05


def ensure_demo(simulator_base_url: str, cloud_base_url: str | None = None) -> Provider:
    """Create (or point at the current port) the Demo organization, its Simulator provider (the fake's
    ComfyUI) and, with `cloud_base_url`, a second one (the fake's Comfy Cloud), so the same workflows run
    on two providers; returns the Simulator.

    Every superuser becomes an owner of the Demo organization, so the admin login `make run`
    prints sees it at once.
    """
    org, _ = Organization.objects.get_or_create(slug=DEMO_SLUG, defaults={"name": "Demo"})
    config = {"max_run_hours": SIMULATOR_MAX_RUN_HOURS}
    simulator = _ensure_provider(org, SIMULATOR_NAME, "comfyui", simulator_base_url, config, {})
    if cloud_base_url is not None:
        secret = dict(DEFAULT_SECRETS["comfycloud"])
        _ensure_provider(org, CLOUD_NAME, "comfycloud", cloud_base_url, config, secret)
    for user in get_user_model().objects.filter(is_superuser=True):
        Membership.objects.get_or_create(organization=org, user=user, defaults={"role": Membership.Role.OWNER})
    return simulator


def demo_cloud(simulator: Provider) -> Provider | None:
    return simulator.organization.providers.filter(name=CLOUD_NAME).first()


def _ensure_provider(
    org: Organization, name: str, kind: str, base_url: str, config: dict[str, Any], secret: dict[str, str]
) -> Provider:
    provider, created = Provider.objects.get_or_create(
        organization=org, name=name, defaults={"kind": kind, "base_url": base_url, "config": config}
    )
    if provider.base_url != base_url or provider.config != config:
        Provider.objects.filter(pk=provider.pk).update(base_url=base_url, config=config)
        provider.base_url, provider.config = base_url, config
    if created or not provider.credentials.exists():
        credential = Credential(provider=provider, name="default")
        credential.set_secret(secret)
        credential.save()
    if created:
        Price.objects.create(provider=provider, per_gpu_second=DEMO_PRICES[name])
    return provider


def prepare_simulator(state: FakeState) -> None:
    """The Simulator lacks one custom node, so workflows using it fail validation as on a real server."""
    state.missing_node_types.add(MISSING_NODE)


# The demo's two workflows. A team reruns the same few graphs with new seeds and prompts, so that is all a
# demo run varies: each template is one workflow fingerprint, and the compare page has something to show.
TEMPLATES = {
    "product-shots": {"ckpt_name": "juggernautXL_v9.safetensors", "steps": 25, "cfg": 5.5, "sampler_name": "dpmpp_2m",
                      "scheduler": "karras"},
    "portraits": {"ckpt_name": "sdxl_base_1.0.safetensors", "steps": 30, "cfg": 7.0, "sampler_name": "euler",
                  "scheduler": "normal"},
}  # fmt: skip


def demo_workflow(rng: random.Random, *, uses_missing_node: bool = False) -> dict[str, Any]:
    """An API-format SDXL text-to-image workflow, one of TEMPLATES with a new seed and prompt; with
    `uses_missing_node`, one that needs a custom node the Simulator does not have (ComfyUI refuses such a
    prompt at submission)."""
    name = rng.choice(sorted(TEMPLATES))
    template = TEMPLATES[name]
    workflow: dict[str, Any] = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": rng.randrange(2**32),
                "steps": template["steps"],
                "cfg": template["cfg"],
                "sampler_name": template["sampler_name"],
                "scheduler": template["scheduler"],
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": template["ckpt_name"]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": rng.choice(PROMPTS), "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, lowres", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": name, "images": ["8", 0]}},
    }
    if uses_missing_node:
        workflow["11"] = {
            "class_type": MISSING_NODE,
            "inputs": {"weight": 0.8, "model": ["4", 0], "image": ["5", 0]},
            "_meta": {"title": "IPAdapter"},
        }
        workflow["3"]["inputs"]["model"] = ["11", 0]
    return workflow


def _traceback(*frames: str) -> list[str]:
    return ["Traceback (most recent call last):\n", *frames]


def failure_error(kind: str, workflow: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The node error ComfyUI reports for a run that fails at execution, by kind of failure."""
    execute = '  File "/ComfyUI/execution.py", line 327, in execute\n'
    if kind == "out_of_memory":
        wanted = rng.choice((2.5, 4.0, 6.75))
        message = (
            f"CUDA out of memory. Tried to allocate {wanted:.2f} GiB. GPU 0 has a total capacity of 23.64 GiB "
            f"of which {rng.uniform(0.4, 1.9):.2f} GiB is free."
        )
        return {
            "node_id": "3",
            "node_type": "KSampler",
            "exception_type": "torch.OutOfMemoryError",
            "exception_message": message,
            "traceback": _traceback(
                execute,
                '  File "/ComfyUI/nodes.py", line 1521, in sample\n',
                '  File "/ComfyUI/comfy/ldm/modules/attention.py", line 447, in attention_pytorch\n',
                f"torch.OutOfMemoryError: {message}\n",
            ),
        }
    if kind == "missing_model":
        path = f"/ComfyUI/models/checkpoints/{workflow['4']['inputs']['ckpt_name']}"
        return {
            "node_id": "4",
            "node_type": "CheckpointLoaderSimple",
            "exception_type": "FileNotFoundError",
            "exception_message": f"[Errno 2] No such file or directory: '{path}'",
            "traceback": _traceback(
                execute,
                '  File "/ComfyUI/nodes.py", line 569, in load_checkpoint\n',
                '  File "/ComfyUI/comfy/utils.py", line 44, in load_torch_file\n',
                f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'\n",
            ),
        }
    # A node exception: a Flux latent decoded with an SDXL VAE.
    message = (
        "Given groups=1, weight of size [512, 4, 3, 3], expected input[1, 16, 128, 128] to have 4 channels, "
        "but got 16 channels instead"
    )
    return {
        "node_id": "8",
        "node_type": "VAEDecode",
        "exception_type": "RuntimeError",
        "exception_message": message,
        "traceback": _traceback(
            execute,
            '  File "/ComfyUI/nodes.py", line 287, in decode\n',
            '  File "/ComfyUI/comfy/sd.py", line 612, in decode\n',
            f"RuntimeError: {message}\n",
        ),
    }


def pick_outcome(rng: random.Random) -> str:
    """ "validation_error" (a refused submission, REFUSAL_RATE of them); else "succeeded" or one of
    FAILURES, the failures together about FAILURE_RATE of the runs."""
    if rng.random() < REFUSAL_RATE:
        return "validation_error"
    if rng.random() >= FAILURE_RATE:
        return "succeeded"
    kinds, weights = zip(*FAILURES.items(), strict=True)
    return rng.choices(kinds, weights)[0]


def submit_demo_run(provider: Provider, state: FakeState | None, rng: random.Random) -> Run:
    """Submit one demo run, to the Simulator or (half of them, when there is one) the Simulator Cloud.
    With the fake's state at hand, script how long it queues and runs and how it ends: most succeed with
    a PNG; the rest fail the ways real runs do (see FAILURES)."""
    outcome = pick_outcome(rng)
    workflow = demo_workflow(rng, uses_missing_node=outcome == "validation_error")
    speed = 1.0
    # A refusal for the missing custom node is the Simulator's (ComfyUI validates node types at submission).
    cloud = demo_cloud(provider) if outcome != "validation_error" else None
    if cloud is not None and rng.random() < 0.5:
        provider, speed = cloud, rng.uniform(*CLOUD_SPEED)
    if state is not None:
        queue, run = rng.uniform(0.5, 6.0) * speed, rng.uniform(5.0, 25.0) * speed
        if outcome == "succeeded" or outcome == "validation_error":
            state.default_script = ((0.0, QUEUED), (queue, RUNNING), (queue + run, SUCCEEDED))
        elif outcome == "timeout":
            # Never finishes: comfytrack gives up after the Simulator's max_run_hours (TIMED_OUT).
            state.default_script = ((0.0, QUEUED), (queue, RUNNING))
        else:
            state.default_script = ((0.0, QUEUED), (queue, RUNNING), (queue + run / 3, FAILED))
            state.failure_error = failure_error(outcome, workflow, rng)
    return submit_run(provider, workflow, origin=Origin.DEMO)
