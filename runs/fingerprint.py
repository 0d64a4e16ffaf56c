"""A workflow's fingerprint: what stays the same when the same workflow runs again.

Runs of one workflow differ in their seeds, prompt texts and input files, and in whatever a submission's
`inputs` override. The fingerprint hashes the API-format graph with those values replaced by a marker
(so the graph's shape, node types, models and settings still count): two runs of the same workflow with
different prompts share a fingerprint; a different checkpoint, step count or node makes another.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

FINGERPRINT_LENGTH = 16  # hex digits of SHA-256: 64 bits, plenty for one organization's workflows
# Inputs that vary from run to run by their nature: seeds, prompts, and the files a run starts from.
PER_RUN_INPUTS = frozenset(
    {
        "seed", "noise_seed", "text", "text_g", "text_l", "prompt", "positive", "negative", "image", "images_path",
        "video", "audio", "file", "filename", "upload", "mask", "image_url", "default_value",
    }
)  # fmt: skip
_VARIES = "<varies>"


def _overridden(workflow: dict[str, Any], inputs: Any) -> tuple[set[tuple[str, str]], set[str]]:
    """(node id, input name) pairs a submission's inputs set, and bare names set on any node.

    Shapes: {"3.seed": 1}, {"3": {"seed": 1}}, and ComfyDeploy's external input names {"prompt": "…"}."""
    pairs: set[tuple[str, str]] = set()
    names: set[str] = set()
    for key, value in inputs.items() if isinstance(inputs, dict) else ():
        node_id, _, name = str(key).partition(".")
        if name:
            pairs.add((node_id, name))
        elif node_id in workflow and isinstance(value, dict):
            pairs.update((node_id, str(n)) for n in value)
        else:
            names.add(str(key))
    return pairs, names


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def shape(workflow: Any, inputs: Any = None) -> dict[str, Any] | None:
    """The graph with per-run values replaced by a marker, or None if `workflow` is not API format."""
    if not isinstance(workflow, dict) or not workflow:
        return None
    pairs, names = _overridden(workflow, inputs)
    result: dict[str, Any] = {}
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return None
        raw_inputs = node.get("inputs")
        node_inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {}
        # A ComfyDeploy external input node whose input_id the submission sets: its value is per run.
        external = str(node_inputs.get("input_id", "")) in names
        kept = {}
        for name, value in node_inputs.items():
            varies = name in PER_RUN_INPUTS or (str(node_id), name) in pairs or name in names
            if external and name != "input_id":
                varies = True
            kept[name] = value if _is_link(value) or not varies else _VARIES
        result[str(node_id)] = {"class_type": str(node["class_type"]), "inputs": kept}
    return result


def workflow_fingerprint(workflow: Any, inputs: Any = None) -> str:
    """The fingerprint of `workflow` as submitted with `inputs`, or "" when the workflow is unknown."""
    graph = shape(workflow, inputs)
    if graph is None:
        return ""
    canonical = json.dumps(graph, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_LENGTH]


# A provider's graph bigger than this (as compact JSON) is not stored on the run.
MAX_PROVIDER_GRAPH_BYTES = 1_000_000


def provider_graph(graph: Any) -> tuple[dict[str, Any], str] | None:
    """A graph a provider reported for a run, as the run stores it (plain JSON that PostgreSQL's jsonb
    takes: no NaN or infinity, no NUL character), and its fingerprint; None when it is not API format,
    cannot be stored, or is too big. Provider input: it must not break the batch write it rides in."""
    try:
        fingerprint = workflow_fingerprint(graph)
        text = json.dumps(graph, allow_nan=False, separators=(",", ":")) if fingerprint else ""
    except (TypeError, ValueError, RecursionError):
        return None
    if not fingerprint or len(text) > MAX_PROVIDER_GRAPH_BYTES or "\\u0000" in text:
        return None
    return json.loads(text), fingerprint


def save_image_prefix(workflow: Any) -> str:
    """The first SaveImage-like node's filename_prefix (what people call the workflow), or ""."""
    if not isinstance(workflow, dict):
        return ""
    for node_id in sorted(workflow, key=str):
        node = workflow[node_id]
        if isinstance(node, dict) and "Save" in str(node.get("class_type", "")):
            prefix = (node.get("inputs") or {}).get("filename_prefix") if isinstance(node.get("inputs"), dict) else None
            if isinstance(prefix, str) and prefix.strip():
                return prefix.strip()[:100]
    return ""


def most_common_prefix(workflows: Iterable[Any]) -> str:
    counts = Counter(p for p in map(save_image_prefix, workflows) if p)
    return counts.most_common(1)[0][0] if counts else ""
