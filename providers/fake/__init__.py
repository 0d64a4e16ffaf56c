"""A fake provider server that speaks all five provider APIs on one loopback port.

Used by the end-to-end tests, the benchmarks and the demo ("Simulator"). Each provider kind is
served under its own path prefix, so one server plays every provider at once:
`server.base_url("comfydeploy")` -> `http://127.0.0.1:PORT/comfydeploy/api`.

Run lifecycles are scripted (see `state.FakeRun`), outputs are real PNG bytes, and fault modes
(latency, 5xx, 429 + Retry-After, malformed JSON, HTML pages, stalls, stale answers) are switched
on per server, from Python or over HTTP at `/_fake/...`.
"""

from providers.fake.server import FakeProviderServer
from providers.fake.state import FakeRun, FakeState, Faults

__all__ = ["FakeProviderServer", "FakeRun", "FakeState", "Faults"]
