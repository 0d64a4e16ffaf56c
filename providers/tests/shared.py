"""The provider data the contract tests read: documented example bodies and recorded ComfyUI responses.

By default the copy in `provider_data/` (so a clean clone needs nothing beside it); with
`COMFYTRACK_SHARED_DIR`, that `shared/` folder's `providers/` instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
