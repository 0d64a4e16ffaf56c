"""What a run cost, in USD, from the prices an admin set for its provider (insights.models.Price).

- `reported`: the provider reported the GPU seconds it bills (ComfyDeploy's `duration`, Comfy Cloud v2's
  `metrics.execution_ms`): cost = those seconds × the price per GPU-second for the run's GPU type (or
  for any GPU).
- `estimated`: no reported usage, so the run's own run time (started → finished) × the price per
  GPU-second, or, without either, the provider's price per run.
- no cost (null) when the provider has no price that applies, and no per-run estimate for a run that
  never ran as far as anyone knows: one that did not succeed and has no start time (refused at
  submission, cancelled or failed in the queue, or lost by a provider that never reported it running).
  Pricing those would bill work nobody saw happen.

Costs are written when a run finishes (a finishing-run subscriber of runs.changes: by the UPDATE that
finishes it) and again for a provider's finished runs when its prices change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import QuerySet

from insights.models import Price
from runs import per_sweep
from runs.changes import Finishing
from runs.models import TERMINAL, CostSource, Run, Status

BATCH = 1000
_CENT_MILLIONTHS = Decimal("0.000001")
_FIELDS = ("pk", "provider_id", "status", "gpu", "gpu_seconds", "started", "finished")


def prices_by_provider(provider_ids: Iterable[int]) -> dict[int, dict[str, Price]]:
    found: dict[int, dict[str, Price]] = defaultdict(dict)
    for price in Price.objects.filter(provider_id__in=set(provider_ids)):
        found[price.provider_id][price.gpu] = price
    return found


def cost_of(
    prices: dict[str, Price],
    gpu: str,
    gpu_seconds: float | None,
    started: datetime | None,
    finished: datetime | None,
    status: str = Status.SUCCEEDED,
) -> tuple[Decimal | None, str]:
    """(cost, cost_source) for one run under its provider's `prices` ({gpu type or "": Price})."""
    price = prices.get(gpu) or prices.get("")
    if price is None:
        return None, ""
    if price.per_gpu_second is not None:
        if gpu_seconds is not None:
            return _usd(Decimal(str(gpu_seconds)) * price.per_gpu_second), CostSource.REPORTED
        if started and finished:
            seconds = Decimal(str(max((finished - started).total_seconds(), 0.0)))
            return _usd(seconds * price.per_gpu_second), CostSource.ESTIMATED
    if price.per_run is not None and (status == Status.SUCCEEDED or started is not None):
        return _usd(price.per_run), CostSource.ESTIMATED
    return None, ""


def _usd(value: Decimal) -> Decimal:
    return value.quantize(_CENT_MILLIONTHS, rounding=ROUND_HALF_UP)


def price_runs(runs: QuerySet[Run]) -> int:
    """Write the cost of the finished runs in `runs`, 1,000 at a time; returns how many changed."""
    runs = runs.filter(status__in=TERMINAL)
    changed, last = 0, 0
    while True:
        rows = list(runs.filter(pk__gt=last).order_by("pk").values_list(*_FIELDS, "cost", "cost_source")[:BATCH])
        if not rows:
            return changed
        last = rows[-1][0]
        prices = prices_by_provider(row[1] for row in rows)
        dirty = []
        for pk, provider_id, status, gpu, gpu_seconds, started, finished, old_cost, old_source in rows:
            cost, source = cost_of(prices.get(provider_id, {}), gpu, gpu_seconds, started, finished, status)
            if (cost, source) != (old_cost, old_source):
                dirty.append(Run(pk=pk, cost=cost, cost_source=source))
        Run.objects.bulk_update(dirty, ["cost", "cost_source"])
        changed += len(dirty)


def cost_finishing_runs(finishing: Sequence[Finishing]) -> None:
    """Finishing-run subscriber (runs.changes): each run's cost and its source join the columns its
    finishing UPDATE writes, from the values it finishes with.

    A provider's prices are read once per sweep (runs.per_sweep): a price saved while a sweep runs applies
    to the runs that sweep finishes at most `runs.per_sweep.MAX_AGE` later; a run finished in between keeps
    the older price until its provider's runs are re-costed (saving a price in the admin, or
    `manage.py price_runs`)."""
    prices = _kept_prices({f.run.provider_id for f in finishing})
    for f in finishing:
        provider_prices = prices[f.run.provider_id]
        if not provider_prices:
            continue  # no price applies: the run's cost stays unknown (null), as it is until it finishes
        run, changes = f.run, f.changes
        # The values the run finishes with: the change's, else the run's own.
        changes["cost"], changes["cost_source"] = cost_of(
            provider_prices,
            changes.get("gpu", run.gpu),
            changes.get("gpu_seconds", run.gpu_seconds),
            changes.get("started", run.started),
            changes.get("finished", run.finished),
            changes["status"],
        )


def _kept_prices(provider_ids: set[int]) -> dict[int, dict[str, Price]]:
    kept: dict[int, dict[str, Price]] = per_sweep.kept("insights.prices", dict)
    missing = provider_ids - kept.keys()
    if missing:
        found = prices_by_provider(missing)
        kept.update({provider_id: found.get(provider_id, {}) for provider_id in missing})
    return kept
