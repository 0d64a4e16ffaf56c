"""`python -m providers.fake --port 8189`: serve the fake provider APIs until interrupted."""

from __future__ import annotations

import argparse

from aiohttp import web

from providers.clients.event_loop import new_event_loop
from providers.fake.server import KINDS, make_app
from providers.fake.state import FakeState, Faults


def main() -> None:
    parser = argparse.ArgumentParser(description="comfytrack's fake provider server (all five provider APIs).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8189)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every provider request")
    args = parser.parse_args()
    state = FakeState()
    state.faults = Faults(latency_ms=args.latency_ms)
    state.record_requests = False  # a long-running server must not keep every request in memory
    print(f"fake providers on http://{args.host}:{args.port}:", flush=True)
    for kind, (_, prefix) in KINDS.items():
        print(f"  {kind:12} http://{args.host}:{args.port}{prefix}", flush=True)
    web.run_app(make_app(state), host=args.host, port=args.port, print=None, access_log=None, loop=new_event_loop())


if __name__ == "__main__":
    main()
