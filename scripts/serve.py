"""Run the web server and the django-q2 cluster side by side; Ctrl-C (or SIGTERM) stops both.

Children are started in our process group, so a terminal's Ctrl-C reaches them directly; we also
forward SIGTERM and wait for them, so nothing is left running behind.
"""

from __future__ import annotations

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
    children = [subprocess.Popen(command) for command in commands]

    def stop(signum=None, frame=None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()

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


if __name__ == "__main__":
    sys.exit(main())
