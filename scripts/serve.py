"""Run the web server and the django-q2 cluster side by side; Ctrl-C (or SIGTERM) stops both.

Each child runs in a process group of its own, so that stopping it also stops what it forked (the q
cluster's workers, which may be in the middle of a 50-second sync loop): Ctrl-C or SIGTERM here sends
SIGINT to every group, waits a little, then kills whatever is left. Nothing keeps running behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys


def main() -> int:
    python = sys.executable
    port = os.environ.get("PORT", "8000")
    commands = [
        [python, "manage.py", "qcluster"],
        [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
    ]
    extra = os.environ.get("COMFYTRACK_EXTRA_PROCESS")
    if extra:
        commands.insert(0, extra.split())
    # A shell may have started us with SIGINT ignored (background jobs); children would inherit that
    # and survive Ctrl-C. Installing Python's handler makes exec reset it to the default for them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    children = [subprocess.Popen(command, start_new_session=True) for command in commands]

    def stop(signum=None, frame=None) -> None:
        for child in children:
            _signal_group(child, signal.SIGINT)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
            # The leader may be gone while its workers still run: finish the whole group.
            _signal_group(child, signal.SIGKILL)

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        while all(child.poll() is None for child in children):
            try:
                children[-1].wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
    except KeyboardInterrupt:
        pass
    stop()
    print("comfytrack stopped.", flush=True)
    return 0


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


if __name__ == "__main__":
    sys.exit(main())
