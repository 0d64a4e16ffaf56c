"""Reading an API-format ComfyUI workflow: its nodes and the inputs people search and look for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.clients.base import ProviderClient
from providers.clients.comfyui import effective_workflow

# Inputs that tell runs apart: prompts, seeds, models, sampling settings.
KEY_INPUTS = (
    "text",
    "prompt",
    "positive",
    "negative",
    "seed",
    "noise_seed",
    "ckpt_name",
    "unet_name",
    "lora_name",
    "vae_name",
    "steps",
    "cfg",
    "sampler_name",
    "scheduler",
    "denoise",
    "width",
    "height",
)
SEARCH_TEXT_LIMIT = 4000


@dataclass(frozen=True)
class NodeSummary:
    node_id: str
    class_type: str
    title: str
    key_inputs: dict[str, Any]


def nodes(workflow: Any) -> list[NodeSummary]:
    """The workflow's nodes in id order, each with its key literal inputs (links to other nodes left out)."""
    if not isinstance(workflow, dict):
        return []
    result = []
    for node_id in sorted(workflow, key=_node_order):
        node = workflow[node_id]
        if not isinstance(node, dict):
            continue
        inputs = node["inputs"] if isinstance(node.get("inputs"), dict) else {}
        key_inputs = {k: v for k, v in inputs.items() if k in KEY_INPUTS and isinstance(v, str | int | float)}
        meta = node["_meta"] if isinstance(node.get("_meta"), dict) else {}
        class_type = str(node.get("class_type", "?"))
        result.append(NodeSummary(str(node_id), class_type, str(meta.get("title") or class_type), key_inputs))
    return result


def effective(workflow: Any, inputs: Any, client_class: type[ProviderClient]) -> Any:
    """The workflow with the run's inputs written into its nodes, where the provider's inputs override
    node inputs (ComfyUI, Comfy Cloud, ESD); as stored where they are a deployment's named inputs."""
    if not client_class.inputs_override_nodes or not isinstance(workflow, dict) or not isinstance(inputs, dict):
        return workflow
    return effective_workflow(workflow, inputs)


def key_values(workflow: Any, inputs: Any) -> dict[str, Any]:
    """The first value of each key input across the workflow, overridden by the run's inputs."""
    return _key_values(nodes(workflow), inputs)


def _key_values(summaries: list[NodeSummary], inputs: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for node in summaries:
        for key, value in node.key_inputs.items():
            values.setdefault(key, value)
    if isinstance(inputs, dict):
        for key, value in inputs.items():
            name = str(key).rsplit(".", 1)[-1]
            if isinstance(value, str | int | float) and (name in KEY_INPUTS or "." not in str(key)):
                values[name] = value
    return values


# The inputs that say what a picture is, in the order people read them: (label, input names to look for).
HEADLINE = (
    ("Prompt", ("text", "prompt", "positive")),
    ("Negative", ("negative",)),
    ("Seed", ("seed", "noise_seed")),
    ("Checkpoint", ("ckpt_name", "unet_name")),
    ("LoRA", ("lora_name",)),
    ("Steps", ("steps",)),
    ("Sampler", ("sampler_name",)),
)


def headline(workflow: Any, inputs: Any) -> list[tuple[str, Any]]:
    """(label, value) for the key inputs a gallery shows: prompt, seed, checkpoint, … — those the run has."""
    values = key_values(workflow, inputs)
    found = []
    for label, names in HEADLINE:
        value = next((values[name] for name in names if name in values and values[name] != ""), None)
        if value is not None:
            found.append((label, value))
    if "width" in values and "height" in values:
        found.append(("Requested size", f"{values['width']}×{values['height']}"))
    return found


CAPTION_LIMIT = 500  # Run.caption's length


def caption(workflow: Any, inputs: Any) -> str:
    """The prompt a gallery tile shows under an output ("" when the run has none): the headline's prompt."""
    prompt = dict(headline(workflow, inputs)).get("Prompt")
    return "" if prompt is None else str(prompt)[:CAPTION_LIMIT]


def search_text(external_id: str, workflow: Any, inputs: Any) -> str:
    """What free-text search looks at: the external id plus key input values and node types."""
    summaries = nodes(workflow)  # read once: it is most of the cost of a graph's search text
    parts = [external_id]
    parts += [str(v) for v in _key_values(summaries, inputs).values()]
    parts += sorted({node.class_type for node in summaries})
    return " ".join(p for p in parts if p)[:SEARCH_TEXT_LIMIT].lower()


def _node_order(node_id: Any) -> tuple[int, str]:
    text = str(node_id)
    return (int(text), text) if text.isdigit() else (10**9, text)
