"""Turning run changes and credential health into incidents and events (database only, no network).

`record_run_changes` is a run-change subscriber (runs.changes): it runs inside the transaction of the
status changes it is given, so a change and the alert events it causes commit together. A batch costs a
query for the organizations' rules (none for an organization already found without any in this sweep)
and one per rule that matches something; success-rate rules add one
query per provider or workflow they re-evaluate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from django.utils import timezone

from alerts.models import Event, Incident, Rule
from providers.models import Credential
from runs import per_sweep
from runs.changes import RunChange
from runs.models import TERMINAL, Run, Status

WATCHED: dict[str, frozenset[str]] = {
    Rule.Kind.RUN_FAILED: frozenset({Status.FAILED}),
    Rule.Kind.RUN_TIMED_OUT_OR_LOST: frozenset({Status.TIMED_OUT, Status.LOST}),
}
RUN_RULES = (Rule.Kind.RUN_FAILED, Rule.Kind.RUN_TIMED_OUT_OR_LOST, Rule.Kind.SUCCESS_RATE)


def _scoped(rule: Rule, run: Run) -> bool:
    provider_ids = {p.pk for p in rule.providers.all()}
    if provider_ids and run.provider_id not in provider_ids:
        return False
    return not rule.workflows or run.workflow_fingerprint in rule.workflows


def open_incident(rule: Rule, key: str, title: str, text: str, run: Run | None = None, now=None) -> bool:
    """Open the rule's incident for `key` with a `fired` event, or add an `update` to the open one when
    it says something new: a success rate re-checked after every run would otherwise fill a digest with
    the same line ("0% of the last 20 runs") once per run. Returns True when a new incident opened."""
    now = now or timezone.now()
    text = text[:500]
    incident = Incident.objects.filter(rule=rule, key=key, closed=None).first()
    opened = incident is None
    if incident is None:
        incident = Incident.objects.create(rule=rule, key=key, title=title[:300], opened=now)
    elif incident.events.order_by("-created", "-id").values_list("text", flat=True).first() == text:
        return False
    kind = Event.Kind.FIRED if opened else Event.Kind.UPDATE
    Event.objects.create(rule=rule, incident=incident, kind=kind, text=text, run=run, created=now)
    return opened


def close_incident(rule: Rule, key: str, text: str, run: Run | None = None, now=None) -> bool:
    """Close the rule's open incident for `key` with a `recovered` event; False if none was open."""
    now = now or timezone.now()
    incident = Incident.objects.filter(rule=rule, key=key, closed=None).first()
    if incident is None:
        return False
    Incident.objects.filter(pk=incident.pk).update(closed=now)
    Event.objects.create(rule=rule, incident=incident, kind=Event.Kind.RECOVERED, text=text[:500], run=run, created=now)
    return True


def _describe(run: Run) -> str:
    name = run.external_id or str(run.code)
    message = (run.error or {}).get("message") if isinstance(run.error, dict) else None
    reason = f": {str(message).splitlines()[0][:200]}" if message else ""
    return f"Run {name[:60]} on {run.provider.name} {run.get_status_display().lower()}{reason}"


def record_run_changes(changes: Sequence[RunChange]) -> None:
    """Run-change subscriber: the batch's runs that just finished, against their organizations' rules.
    A batch of an organization without run rules costs one query.

    A tracked run whose graph arrives after its status (runs.graphs) had no fingerprint when it
    finished, so only rules scoped to workflows never saw it: they see it when its graph arrives."""
    finished = [c.run for c in changes if c.status_changed and c.run.status in TERMINAL]
    if finished:
        _record_against(finished, lambda rule: True)
    arrived = [c.run for c in changes if c.graph_arrived and c.run.status in TERMINAL]
    if arrived:
        _record_against(arrived, lambda rule: bool(rule.workflows), late=True)


def _record_against(finished: list[Run], applies: Callable[[Rule], bool], late: bool = False) -> None:
    # Organizations found without run rules are not asked again within a sweep (runs.per_sweep): a rule
    # added meanwhile sees the runs that finish from at most `runs.per_sweep.MAX_AGE` later on. The rules
    # themselves are read for every batch, so an edited or deleted rule is never used.
    without_rules: set[int] = per_sweep.kept("alerts.orgs_without_run_rules", set)
    organizations = {r.organization_id for r in finished} - without_rules
    if not organizations:
        return
    rules = list(Rule.objects.filter(organization__in=organizations, kind__in=RUN_RULES).prefetch_related("providers"))
    without_rules.update(organizations - {rule.organization_id for rule in rules})
    by_org: dict[int, list[Rule]] = defaultdict(list)
    for rule in rules:
        if applies(rule):
            by_org[rule.organization_id].append(rule)
    if not by_org:
        return
    fields = (
        "id",
        "code",
        "organization_id",
        "provider__name",
        "external_id",
        "status",
        "error",
        "workflow_fingerprint",
        "finished",
    )
    runs = Run.objects.filter(pk__in=[r.id for r in finished if r.organization_id in by_org]).select_related("provider")
    record_runs(list(runs.only(*fields).order_by("finished", "id")), by_org, late=late)


def record_runs(
    runs: Iterable[Run], rules_by_org: dict[int, list[Rule]], now: datetime | None = None, late: bool = False
) -> None:
    """Each rule against the runs of its organization, in the order they finished. `late`: runs seen by
    a rule after they finished (their graph arrived later), which must not close a newer incident."""
    now = now or timezone.now()
    matches: dict[int, tuple[Rule, list[Run]]] = {}
    for run in runs:
        for rule in rules_by_org.get(run.organization_id, ()):
            if _scoped(rule, run):
                matches.setdefault(rule.pk, (rule, []))[1].append(run)
    for rule, matched in matches.values():
        if rule.kind == Rule.Kind.SUCCESS_RATE:
            scopes = {
                (f"workflow:{r.workflow_fingerprint}" if rule.workflows else f"provider:{r.provider_id}"): r
                for r in matched
            }
            for key, run in scopes.items():
                _check_success_rate(rule, key, run, now)
        else:
            _record_outcomes(rule, matched, now, late)


def _record_outcomes(rule: Rule, runs: list[Run], now: datetime, late: bool = False) -> None:
    """A failure-type rule over one batch, one incident per provider: a watched status opens the
    provider's incident (or adds to it), a success on that provider closes it. Per provider, so one
    provider's successes never 'recover' another's failures (with one incident per rule, a busy
    healthy provider closed and a failing one reopened it all day). A query for the open incidents and
    one INSERT of the events, plus one per open/close."""
    open_by_key = {i.key: i for i in Incident.objects.filter(rule=rule, closed=None)}
    events = []
    for run in runs:
        key = f"provider:{run.provider_id}"
        incident = open_by_key.get(key)
        if run.status in WATCHED[rule.kind]:
            kind = Event.Kind.UPDATE
            if incident is None:
                title = f"{rule.name}: {run.provider.name}: {rule.summary}"[:300]
                incident = open_by_key[key] = Incident.objects.create(rule=rule, key=key, title=title, opened=now)
                kind = Event.Kind.FIRED
            events.append(
                Event(rule=rule, incident=incident, kind=kind, text=_describe(run)[:500], run=run, created=now)
            )
        elif run.status == Status.SUCCEEDED:
            # "": the one incident per rule that earlier versions kept; any success in scope closes it.
            for closing in (open_by_key.pop(key, None), open_by_key.pop("", None)):
                if closing is None:
                    continue
                if late and (run.finished is None or run.finished < closing.opened):
                    # A success that happened before this incident opened says nothing about now.
                    open_by_key.setdefault(closing.key, closing)
                    continue
                Incident.objects.filter(pk=closing.pk).update(closed=now)
                text = f"Runs succeed again: {_describe(run)}"[:500]
                events.append(
                    Event(rule=rule, incident=closing, kind=Event.Kind.RECOVERED, text=text, run=run, created=now)
                )
    Event.objects.bulk_create(events)


def _check_success_rate(rule: Rule, key: str, run: Run, now: datetime) -> None:
    """Re-evaluate one provider's (or workflow's) success rate over its last `window` finished runs."""
    scope = Run.objects.filter(organization=rule.organization_id, status__in=TERMINAL)
    if key.startswith("workflow:"):
        scope, label = (
            scope.filter(workflow_fingerprint=run.workflow_fingerprint),
            f"workflow {run.workflow_fingerprint}",
        )
    else:
        scope, label = scope.filter(provider=run.provider_id), run.provider.name
    statuses = list(scope.order_by("-finished", "-id").values_list("status", flat=True)[: rule.window])
    if len(statuses) < rule.window:
        return  # not enough runs yet to say
    rate = 100.0 * statuses.count(Status.SUCCEEDED) / len(statuses)
    text = f"{label}: {rate:.0f}% of the last {len(statuses)} runs succeeded (threshold {rule.threshold:g}%)"
    if rate < rule.threshold:
        open_incident(rule, key, f"{rule.name}: {label} below {rule.threshold:g}%", text, run, now)
    else:
        close_incident(rule, key, f"Recovered: {text}", run, now)


def check_credentials(now: datetime | None = None) -> int:
    """Credential rules: open an incident for each credential failing longer than the rule's minutes,
    close the ones whose credential works again. Returns how many incidents opened or closed."""
    now = now or timezone.now()
    changed = 0
    for rule in Rule.objects.filter(kind=Rule.Kind.CREDENTIAL_FAILING).prefetch_related("providers"):
        credentials = Credential.objects.filter(provider__organization=rule.organization_id, is_active=True)
        if rule.providers.all():
            credentials = credentials.filter(provider__in=rule.providers.all())
        failing = {}
        for credential in credentials.select_related("provider"):
            if credential.failing_since and now - credential.failing_since >= timedelta(minutes=rule.minutes):
                failing[f"credential:{credential.code}"] = credential
        already = set(Incident.objects.filter(rule=rule, closed=None).values_list("key", flat=True))
        for key, credential in failing.items():
            if key not in already:
                changed += open_incident(rule, key, *_credential_texts(rule, credential, now), now=now)
        for incident in Incident.objects.filter(rule=rule, closed=None).exclude(key__in=failing):
            changed += close_incident(rule, incident.key, f"Recovered: {incident.title}", now=now)
    return changed


def _credential_texts(rule: Rule, credential: Credential, now: datetime) -> tuple[str, str]:
    minutes = int((now - (credential.failing_since or now)).total_seconds() // 60)
    error = (credential.last_error or "no details").splitlines()[0][:200]
    name = credential.provider.name
    return (
        f"{rule.name}: {name} credential failing",
        f"{name}'s credential {credential.name!r} has been failing for {minutes} min: {error}",
    )
