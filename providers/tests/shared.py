"""The provider data the contract tests read: documented example bodies and recorded ComfyUI responses.

By default the copy in `provider_data/` (so a clean clone needs nothing beside it); with
`COMFYTRACK_SHARED_DIR`, that `shared/` folder's `providers/` instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from providers.clients.base import ProviderError, RunError, RunSnapshot

_SHARED_DIR = os.environ.get("COMFYTRACK_SHARED_DIR")
PROVIDERS_DIR = Path(_SHARED_DIR) / "providers" if _SHARED_DIR else Path(__file__).resolve().parent / "provider_data"


def _load(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the tests read provider data from {PROVIDERS_DIR} "
            "(providers/tests/provider_data, or COMFYTRACK_SHARED_DIR/providers when that is set)."
        )
    return json.loads(path.read_text())


def fixture(name: str) -> Any:
    """A documented example body, e.g. fixture("comfydeploy/get_run_success.json")."""
    return _load(PROVIDERS_DIR / "fixtures" / name)


def recorded(name: str) -> Any:
    """A real response recorded from ComfyUI 0.3.64, e.g. recorded("history_success.json")."""
    return _load(PROVIDERS_DIR / "recorded-comfyui" / name)


def recorded_bytes(name: str) -> bytes:
    return (PROVIDERS_DIR / "recorded-comfyui" / name).read_bytes()


def snapshots(results: Mapping[str, RunSnapshot | ProviderError]) -> dict[str, RunSnapshot]:
    """fetch_many's answers, each asserted to be a snapshot (a ProviderError fails the test with its message)."""
    found = {}
    for external_id, result in results.items():
        assert isinstance(result, RunSnapshot), f"{external_id}: {result}"
        found[external_id] = result
    return found


def error_of(snapshot: RunSnapshot) -> RunError:
    """The snapshot's error, asserted to be there."""
    assert snapshot.error is not None, f"{snapshot.external_id} has no error"
    return snapshot.error
