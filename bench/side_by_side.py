"""Two versions of the code measured side by side, rounds alternating old and new (a script).

    python bench/side_by_side.py --old-tree ../old [--new-tree .] [--rounds 2] [--only sync,api,pages] \
        [--sync-n 10000] [--kinds comfydeploy,comfycloud,comfyui] [--api-seconds 30] [--pages-runs 10000]

The old tree is a git worktree of the earlier commit (`git worktree add ../old <commit>`), set up with
its own virtualenv (`make setup` in it). Each tree runs its own `bench/sync_throughput.py`,
`bench/api_throughput.py` and `bench/pages.py` with its own Python and the same arguments: a tree's
scripts import that tree's modules, and the two schemas may differ. An old sync_throughput.py without
`--origin` or `--skip-archive` needs them added to the worktree's copy, as the current one has them.
Each side has its own PostgreSQL databases, `<prefix>_<side>_<benchmark>` (created and migrated by the
scripts; the API's and the pages' runs are seeded once and reused). Within a round each benchmark runs
on both sides back to back, and the side that goes first alternates from round to round, so the drift
of a shared machine falls on both alike. The output archive is left out unless `--archive`.

Every script's output is kept under `--log` (one file per run, with the load average before it); at the
end a Markdown summary gives each figure per round, old and new, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("old", "new")
# Settings a caller's shell may carry that would make the two sides differ; each script sets its own.
CLEARED_ENV = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "VIRTUAL_ENV")


@dataclass
class Figures:
    """One benchmark's figures per side, one value per round, in the order the rounds ran."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, name: str, side: str, value: float) -> None:
        self.values.setdefault(name, {s: [] for s in SIDES})[side].append(value)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_script(tree: Path, script: str, args: list[str], database: str, log: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env["DATABASE_URL"] = database
    python = tree / ".venv" / "bin" / "python"
    command = [str(python), str(tree / "bench" / script), *args]
    header = f"$ DATABASE_URL={database} {' '.join(command)}\n# load average before: {load_average()}\n"
    started = time.perf_counter()
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    footer = f"# exit {result.returncode} after {time.perf_counter() - started:.1f} s; load after: {load_average()}\n"
    log.write_text(header + result.stdout + result.stderr + footer)
    if result.returncode:
        raise SystemExit(f"{command} failed (exit {result.returncode}), see {log}:\n{result.stderr[-2000:]}")
    return result.stdout


def parse_sync(output: str, figures: Figures, side: str) -> None:
    patterns = {
        "runs/s": r"^engine: .* -> ([\d,.]+) runs/s",
        "× sequential": r"^ratio: .* = ([\d.]+)x",
        "sequential runs/s": r"^baseline: .* -> ([\d,.]+) runs/s",
        "SQL statements": r"SQL statements per run \(([\d,]+) in all\)",
        "archive outputs/s": r"^archive: .* -> ([\d,.]+) outputs/s",
    }
    for name, pattern in patterns.items():
        if match := re.search(pattern, output, re.MULTILINE):
            figures.add(name, side, float(match.group(1).replace(",", "")))
    if match := re.search(r"CPU per run: (.*)$", output, re.MULTILINE):
        for part in match.group(1).split(", "):
            name, micros = part.rsplit(" ", 2)[0], part.rsplit(" ", 2)[1]
            figures.add(f"CPU per run µs, {name}", side, float(micros))


def parse_api(output: str, figures: Figures, side: str) -> None:
    for line in output.splitlines():
        if match := re.match(r"^(GET \S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+) / ([\d.]+)", line):
            endpoint = match.group(1)
            for name, value in zip(
                ("req/s", "p50 ms", "p99 ms", "errors", "app CPU ms/request", "PostgreSQL CPU ms/request"),
                match.groups()[1:],
                strict=True,
            ):
                figures.add(f"{endpoint} {name}", side, float(value))


def parse_pages(output: str, figures: Figures, side: str) -> None:
    for line in output.splitlines():
        # The CPU column is optional: an older pages.py prints none.
        if match := re.match(r"^  (\S.*?)\s+([\d.]+)\s+([\d.]+)\s+(\d+)(?:\s+([\d.]+))?$", line):
            figures.add(f"{match.group(1)} p50 ms", side, float(match.group(2)))
            figures.add(f"{match.group(1)} p95 ms", side, float(match.group(3)))
            figures.add(f"{match.group(1)} SQL", side, float(match.group(4)))
            if match.group(5) is not None:
                figures.add(f"{match.group(1)} CPU ms", side, float(match.group(5)))


def summary(title: str, figures: Figures) -> str:
    lines = [f"\n### {title}\n", "| figure | old, per round | new, per round | new / old (medians) |"]
    lines.append("|---|---|---|---|")
    for name, sides in figures.values.items():
        cells = [", ".join(f"{v:,.1f}" if v < 100 else f"{v:,.0f}" for v in sides[s]) for s in SIDES]
        medians = [statistics.median(sides[s]) if sides[s] else 0.0 for s in SIDES]
        ratio = f"{medians[1] / medians[0]:.2f}" if medians[0] else "–"
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="a worktree of the earlier commit, set up")
    parser.add_argument("--new-tree", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="sync,api,pages", help="comma-separated: sync, api, pages")
    parser.add_argument("--database-prefix", default="postgres://postgres@127.0.0.1:5432/ct_bench_sbs")
    parser.add_argument("--sync-n", type=int, default=10_000)
    parser.add_argument(
        "--kinds",
        default="comfydeploy,comfycloud,comfyui",
        help="comma-separated sync kinds, each optionally :origin (tracked, the default, or api)",
    )
    parser.add_argument("--baseline", type=int, default=200, help="runs polled by the sequential loop")
    parser.add_argument("--archive", action="store_true", help="time the output archive after each sync too")
    parser.add_argument("--api-runs", type=int, default=100_000)
    parser.add_argument("--api-seconds", type=float, default=30)
    parser.add_argument("--api-warmup", type=float, default=5)
    parser.add_argument("--pages-runs", type=int, default=10_000)
    parser.add_argument("--pages-repeat", type=int, default=60)
    parser.add_argument("--log", type=Path, default=Path("var/side_by_side"))
    args = parser.parse_args()

    trees = {"old": args.old_tree.resolve(), "new": args.new_tree.resolve()}
    for side, tree in trees.items():
        if not (tree / ".venv" / "bin" / "python").exists():
            raise SystemExit(f"{side} tree {tree} has no .venv: run `make setup` in it")
    commits = {
        side: subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True, check=True
        ).stdout.strip()
        for side, tree in trees.items()
    }
    args.log.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    benchmarks: list[tuple[str, str, str, list[str]]] = []  # (label, database suffix, script, arguments)
    if "sync" in only:
        for item in args.kinds.split(","):
            kind, _, origin = item.partition(":")
            arguments = ["--n", str(args.sync_n), "--kind", kind, "--baseline", str(args.baseline)]
            arguments += ["--origin", origin or "tracked", *([] if args.archive else ["--skip-archive"])]
            benchmarks.append((f"sync {kind} {origin or 'tracked'}", "sync", "sync_throughput.py", arguments))
    if "api" in only:
        arguments = ["--runs", str(args.api_runs), "--seconds", str(args.api_seconds)]
        benchmarks.append(("api", "api", "api_throughput.py", [*arguments, "--warmup", str(args.api_warmup)]))
    if "pages" in only:
        arguments = ["--runs", str(args.pages_runs), "--repeat", str(args.pages_repeat)]
        benchmarks.append((f"pages {args.pages_runs:,} runs", "pages", "pages.py", arguments))
    parsers = {"sync": parse_sync, "api": parse_api, "pages": parse_pages}

    print(f"old {commits['old']} ({trees['old']}), new {commits['new']} ({trees['new']}); logs in {args.log}")
    results = {label: Figures() for label, *_ in benchmarks}
    loads: list[str] = []
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for round_ in range(args.rounds):
        order = SIDES if round_ % 2 == 0 else SIDES[::-1]
        for label, suffix, script, arguments in benchmarks:
            for side in order:
                loads.append(load_average())
                log = args.log / f"{stamp}-r{round_ + 1}-{re.sub(r'[^a-z0-9]+', '-', label)}-{side}.txt"
                database = f"{args.database_prefix}_{side}_{suffix}"
                started = time.strftime("%H:%M:%S", time.gmtime())
                output = run_script(trees[side], script, arguments, database, log)
                parsers[suffix](output, results[label], side)
                print(f"round {round_ + 1} {label:28} {side} ({started} UTC, load {loads[-1]}) done", flush=True)
        # After every round, so that a run stopped early still has its figures.
        print(f"\n## old {commits['old']} against new {commits['new']}, {round_ + 1} round(s)")
        print(f"load average (1, 5, 15 min) before each run: {'; '.join(loads)}")
        for label, figures in results.items():
            print(summary(label, figures), flush=True)


if __name__ == "__main__":
    main()
