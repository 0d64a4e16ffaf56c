"""The layering, checked on the import graph (grimp): no cycle between modules, the provider clients import
no Django, nothing below the surfaces (the engine included) imports a view, API or URL module
(docs/architecture.md, "Layers"), and no module imports a test module.

Every import counts: at module level, inside a function (a cycle held apart by a function-level import is
still a cycle) and under `if TYPE_CHECKING:` (a type-only cycle still ties the two modules together).
Tests and benchmarks are modules too."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import grimp
import pytest

PACKAGES = ("accounts", "alerts", "comfytrack", "insights", "providers", "runs", "webhooks")
EVERYTHING = (*PACKAGES, "bench")
ENGINE = ("runs.sync", "runs.fetching", "runs.applying", "runs.archive", "runs.bulk", "runs.changes")


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*EVERYTHING, include_external_packages=True, exclude_type_checking_imports=False)


def all_modules() -> set[str]:
    """First-party modules, tests and benchmarks included."""
    return {m for m in graph().modules if m.split(".")[0] in EVERYTHING}


def app_modules() -> list[str]:
    return sorted(m for m in all_modules() if m.split(".")[0] in PACKAGES and ".tests" not in m)


def modules_pytest_collects() -> list[str]:
    """The test modules: `test_*.py` in a `tests` package (`comfytrack.test_settings` is the suite's
    settings, not tests)."""
    return sorted(m for m in all_modules() if ".tests." in m and m.rsplit(".", 1)[-1].startswith("test_"))


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
    modules = all_modules()
    assert {"runs.tests.test_sync", "bench.sync_throughput"} <= modules
    edges = {m: graph().find_modules_directly_imported_by(m) & modules for m in modules}
    assert cycles(edges) == []


def test_imports_inside_functions_and_for_type_checking_count() -> None:
    """webhooks.apps imports webhooks.emit inside `ready()`; runs.changes imports runs.models only for
    type checking."""
    assert "webhooks.emit" in graph().find_modules_directly_imported_by("webhooks.apps")
    assert "runs.models" in graph().find_modules_directly_imported_by("runs.changes")


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


def test_the_engine_imports_none_of_the_apps_that_subscribe_to_it() -> None:
    """Outbound webhooks, alerts and insights learn of run changes through the hook (runs.changes)."""
    subscribers = [m for m in app_modules() if m.split(".")[0] in ("webhooks", "alerts", "insights")]
    assert "webhooks.emit" in subscribers and "alerts.recording" in subscribers
    chains = [graph().find_shortest_chain(importer=e, imported=m) for e in ENGINE for m in subscribers]
    assert [chain for chain in chains if chain] == []


def test_only_surfaces_import_surfaces() -> None:
    """Models, the engine, loops and helpers never reach up into a view, API router, URL conf or admin."""
    below = [m for m in app_modules() if m not in surfaces()]
    assert "runs.models" in below and "webhooks.delivery" in below
    chains = [graph().find_shortest_chain(importer=m, imported=s) for m in below for s in surfaces()]
    assert [chain for chain in chains if chain] == []


def test_the_providers_app_imports_nothing_from_runs() -> None:
    """Providers sit below runs: a run points at its provider, never the other way round."""
    providers = [m for m in app_modules() if m.startswith("providers.")]
    assert "providers.health" in providers
    chains = [graph().find_shortest_chain(importer=m, imported="runs") for m in providers]
    assert [chain for chain in chains if chain] == []


def test_no_module_imports_a_test_module() -> None:
    """Helpers and fixtures that several test modules use live in a conftest, a plugin under
    `comfytrack/testing/` or a helper module (`runs/tests/sync_helpers.py`), never in a test module that
    the others import (CONTRIBUTING.md, "Tests"). A helper module that imported a test module would only
    hide such an import, so nothing imports one."""
    tests = modules_pytest_collects()
    assert "runs.tests.test_sync" in tests and "comfytrack.test_settings" not in tests
    assert "runs.tests.sync_helpers" in graph().find_modules_directly_imported_by("runs.tests.test_sync")
    importers = {test: sorted(graph().find_modules_that_directly_import(test) & all_modules()) for test in tests}
    assert {test: found for test, found in importers.items() if found} == {}
