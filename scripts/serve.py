"""Run comfytrack's processes side by side; Ctrl-C (or SIGTERM) stops them all.

    scripts/serve.py                 development: runserver + the django-q2 cluster (what `make run` uses)
    scripts/serve.py --production    gunicorn (comfytrack/gunicorn_config.py) + the django-q2 cluster
    scripts/serve.py --web           gunicorn only (a web machine)
    scripts/serve.py --worker        the django-q2 cluster only (a worker machine)

Each child runs in a process group of its own, so that stopping it also stops what it forked (gunicorn's
workers, the q cluster's workers, which may be in the middle of a sync loop): Ctrl-C or SIGTERM
here sends each group its stop signal (gunicorn: SIGTERM, a graceful stop; the others SIGINT), waits for
gunicorn's graceful timeout, then kills whatever is left. Nothing keeps running behind.

With gunicorn, Prometheus metrics are counted across processes in PROMETHEUS_MULTIPROC_DIR; when it is
unset, a fresh directory is made for this start (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile


def commands(mode: str, python: str) -> list[tuple[list[str], int]]:
    """(command, stop signal) per child."""
    cluster = ([python, "manage.py", "qcluster"], signal.SIGINT)
    gunicorn = (
        [python, "-m", "gunicorn", "-c", "python:comfytrack.gunicorn_config", "comfytrack.wsgi"],
        signal.SIGTERM,
    )
    if mode == "web":
        return [gunicorn]
    if mode == "worker":
        return [cluster]
    if mode == "production":
        return [cluster, gunicorn]
    port = os.environ.get("PORT", "8000")
    return [cluster, ([python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], signal.SIGINT)]


def main() -> int:
    parser = argparse.ArgumentParser(description="Run comfytrack's web server and task cluster.")
    group = parser.add_mutually_exclusive_group()
    for mode in ("production", "web", "worker"):
        group.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode)
    mode = parser.parse_args().mode or "development"
    children_commands = commands(mode, sys.executable)
    extra = os.environ.get("COMFYTRACK_EXTRA_PROCESS")
    if extra:
        children_commands.insert(0, (extra.split(), signal.SIGINT))
    made_dir = None
    if mode != "development" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        made_dir = tempfile.mkdtemp(prefix="comfytrack-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made_dir
    # A shell may have started us with SIGINT ignored (background jobs); children would inherit that
    # and survive Ctrl-C. Installing Python's handler makes exec reset it to the default for them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    children = [
        (subprocess.Popen(command, start_new_session=True), stop_with) for command, stop_with in children_commands
    ]
    grace = float(os.environ.get("COMFYTRACK_WEB_GRACEFUL_TIMEOUT") or 30) + 5

    def stop() -> None:
        for child, stop_with in children:
            _signal_group(child, stop_with)
        for child, _ in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=grace)
            # The leader may be gone while its workers still run: finish the whole group.
            _signal_group(child, signal.SIGKILL)
        if made_dir:
            shutil.rmtree(made_dir, ignore_errors=True)

    def on_sigterm(*_args: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops everything the way Ctrl-C does

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while all(child.poll() is None for child, _ in children):
            try:
                children[-1][0].wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    # A second signal while the children stop must not cut the stop short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop()
    print("comfytrack stopped.", flush=True)
    return 0


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


if __name__ == "__main__":
    sys.exit(main())
