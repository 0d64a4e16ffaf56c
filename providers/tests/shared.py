"""Access to ../shared/providers (fixtures, recorded ComfyUI responses, specs): data we load, never copy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SHARED_DIR = Path(os.environ.get("COMFYTRACK_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")
PROVIDERS_DIR = SHARED_DIR / "providers"


def _load(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the tests read provider fixtures from ../shared/providers "
            "(set COMFYTRACK_SHARED_DIR if shared/ lives elsewhere)."
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
