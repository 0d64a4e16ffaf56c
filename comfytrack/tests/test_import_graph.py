"""The layering, checked on the import graph (grimp; imports inside functions count, `if TYPE_CHECKING:`
ones do not): no cycle between modules, the provider clients import no Django, and the engine imports no
view or API module (docs/architecture.md, "Layers")."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import grimp
import pytest

PACKAGES = ("accounts", "alerts", "comfytrack", "insights", "providers", "runs", "webhooks")
ENGINE = ("runs.sync", "runs.fetching", "runs.applying", "runs.archive", "runs.bulk", "runs.changes")


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, exclude_type_checking_imports=True)


def app_modules() -> list[str]:
    return sorted(m for m in graph().modules if m.split(".")[0] in PACKAGES and ".tests" not in m)


def surfaces() -> list[str]:
    """Modules that serve people: views, API routers, URL confs, admin."""
    names = [(m, m.rsplit(".", 1)[-1]) for m in app_modules()]
    return [m for m, last in names if last in ("api", "urls", "admin") or last.startswith("views")]


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (strongly connected components with
    more than one member; Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(sorted(edges[root])))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while (member := stack.pop()) != node:
                        on_stack.discard(member)
                        component.append(member)
                    on_stack.discard(node)
                    if component:
                        found.append(sorted([node, *component]))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(found)


def test_no_module_imports_itself_through_others() -> None:
    modules = set(app_modules())
    edges = {m: graph().find_modules_directly_imported_by(m) & modules for m in modules}
    assert cycles(edges) == []


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"f"}, "f": {"e"}, "g": {"g"}}
    assert cycles(edges) == [["a", "b", "c"], ["e", "f"]]


def test_the_provider_clients_import_no_django() -> None:
    clients = [m for m in app_modules() if m.startswith("providers.clients")]
    assert len(clients) > 5
    chains = [graph().find_shortest_chain(importer=m, imported="django") for m in clients]
    assert [chain for chain in chains if chain] == []


@pytest.mark.parametrize("module", ENGINE)
def test_the_engine_imports_no_view_or_api(module: str) -> None:
    assert "runs.views" in surfaces() and "runs.api" in surfaces()
    chains = [graph().find_shortest_chain(importer=module, imported=surface) for surface in surfaces()]
    assert [chain for chain in chains if chain] == []


def test_the_providers_app_imports_nothing_from_runs() -> None:
    """Providers sit below runs: a run points at its provider, never the other way round."""
    providers = [m for m in app_modules() if m.startswith("providers.")]
    assert "providers.health" in providers
    chains = [graph().find_shortest_chain(importer=m, imported="runs") for m in providers]
    assert [chain for chain in chains if chain] == []
