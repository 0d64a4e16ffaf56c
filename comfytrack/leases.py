"""Leases: work claimed so that two workers never do the same thing, and a dead worker's work comes back.

A lease is a datetime column on the rows being worked on: a row is held until that moment. The sync
sweep (runs being polled), the output archive (outputs being downloaded), webhook delivery and alert
sending (messages being sent) all claim, renew and release through `Lease` (docs/background-work.md,
"Leases").

A claim is one short transaction with the same statements on both databases: the due rows are read in
order and locked, then their lease is set. PostgreSQL locks them with `FOR UPDATE SKIP LOCKED`, so a
second worker claiming at the same moment skips them and takes the next ones; SQLite has no row locks,
but its transactions take the database's write lock when they begin (`transaction_mode` IMMEDIATE in
the settings), so claims run one after the other and the second sees the first's leases. Either way a
row is never claimed twice while its lease lasts, and one whose lease lapsed (a killed worker) is due
again. A worker renews its leases while it waits on slow work (`Holder`) and releases what it will not
do, so its rows go to the next worker at once instead of after the lease.

`claim_where` is the same claim as one statement, for the sync sweep's hot path: `UPDATE … WHERE pk =
ANY(ARRAY(SELECT … LIMIT n FOR UPDATE SKIP LOCKED)) RETURNING …` (SQLite: `pk IN (SELECT … LIMIT n)`).
The subquery locks the rows it picks (SQLite: the statement runs under the write lock), so the guarantees
are those of `claim`, in one round trip, without the list of a thousand ids sent back for the UPDATE.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import connections, models, transaction
from django.db.models import DEFERRED, Q, QuerySet
from django.utils import timezone

from comfytrack.sql import column_of, concrete_field, python_value

logger = logging.getLogger("comfytrack.leases")

M = TypeVar("M", bound=models.Model)
T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    """Rows of `model` are held until the moment in their column `field` (a nullable `DateTimeField`).

    `length` is how long a claim or a renewal holds a row; `renew_every` how often a `Holder` renews
    (None: work that is bounded well within `length`, never renewed).
    """

    model: type[models.Model]
    field: str
    length: timedelta
    renew_every: float | None = None

    def free(self, now: datetime) -> Q:
        """Rows nobody holds at `now`: never leased, released, or their lease lapsed."""
        return Q(**{f"{self.field}__isnull": True}) | Q(**{f"{self.field}__lt": now})

    def claim(self, due: QuerySet[M], limit: int, now: datetime | None = None) -> list[M]:
        """Lease up to `limit` rows of `due` (in its order) and return them with the lease set.

        `due` must leave out rows that are held (`free`, or a due time the lease pushes forward). Rows
        another worker is claiming at this moment are skipped, never waited for. The lease runs from
        now, or from `now` if that is later (a claim as of a later moment holds its rows past it).
        """
        with transaction.atomic(using=due.db):
            rows = list(due.select_for_update(skip_locked=True, of=("self",))[:limit])
            if not rows:
                return []
            until = max(now or timezone.now(), timezone.now()) + self.length
            self.model._default_manager.using(due.db).filter(pk__in=[row.pk for row in rows]).update(
                **{self.field: until}
            )
        for row in rows:
            setattr(row, self.field, until)
        return rows

    def claim_where(
        self,
        where: str,
        params: Sequence[Any],
        *,
        order_by: str,
        limit: int,
        fields: Sequence[str],
        now: datetime | None = None,
    ) -> list[Any]:
        """`claim` in one statement: lease up to `limit` rows matching `where` (SQL over the model's table
        aliased `t`, its values in `params`), taken in the order of `order_by` (SQL over `t`); returns them
        loaded with only `fields` (the others load on first access), in no particular order.

        `where` must leave out rows that are held (`free`'s condition, written out). The SQL is model
        metadata and the caller's fixed text; every value is a parameter.
        """
        model = self.model
        meta = model._meta
        db = model._default_manager.db
        connection = connections[db]
        quote = connection.ops.quote_name
        table = quote(meta.db_table)
        pk = column_of(concrete_field(model, meta.pk.name))
        wanted = {concrete_field(model, name).attname for name in fields}
        # In the model's field order: `from_db` takes the loaded values in that order.
        loaded = [f for f in meta.concrete_fields if isinstance(f, models.Field) and f.attname in wanted]
        lease = concrete_field(model, self.field)
        picked = f"SELECT t.{pk} FROM {table} AS t WHERE {where} ORDER BY {order_by} LIMIT {int(limit)}"  # noqa: S608
        if connection.vendor == "postgresql":
            # An array of the picked keys, worked out once (an InitPlan). As `pk IN (subquery)` the planner
            # may run the subquery again for every row it joins (a nested loop, chosen when the table's
            # statistics say it is small); run again, SKIP LOCKED passes over the rows this statement has
            # just updated and picks the next ones, so the claim would take every due row, not `limit`.
            matches = f"{pk} = ANY(ARRAY({picked} FOR UPDATE OF t SKIP LOCKED))"
        else:
            matches = f"{pk} IN ({picked})"
        sql = (
            f"UPDATE {table} SET {column_of(lease)} = %s WHERE {matches} "  # noqa: S608 - model metadata only
            f"RETURNING {', '.join(column_of(f) for f in loaded)}"
        )
        until = max(now or timezone.now(), timezone.now()) + self.length
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(sql, [lease.get_db_prep_value(until, connection), *params])
            rows = cursor.fetchall()
        if connection.vendor != "postgresql":
            # psycopg hands back Python values; SQLite's text and integers become the fields' types.
            rows = [[python_value(f, value) for f, value in zip(loaded, row, strict=True)] for row in rows]
        # Each row widened to one value per concrete field, DEFERRED for those not loaded (what `from_db`
        # would work out field by field, per row), by one C-level getter over the row plus the marker.
        position = {f.attname: index for index, f in enumerate(loaded)}
        widen = operator.itemgetter(*(position.get(f.attname, len(loaded)) for f in meta.concrete_fields))
        attnames = [f.attname for f in meta.concrete_fields]
        return [model.from_db(db, attnames, widen((*row, DEFERRED))) for row in rows]

    def renew(self, pks: Iterable[Any]) -> int:
        """Hold the rows `length` longer from now; a row whose lease was cleared (its work recorded) stays free."""
        pks = list(pks)
        if not pks:
            return 0
        return self.model._default_manager.filter(pk__in=pks, **{f"{self.field}__isnull": False}).update(
            **{self.field: timezone.now() + self.length}
        )

    def release(self, pks: Iterable[Any], due: datetime | None = None) -> int:
        """Hand the rows back: free at once (a lock column) or due at `due` (a due-time column)."""
        pks = list(pks)
        if not pks:
            return 0
        return self.model._default_manager.filter(pk__in=pks).update(**{self.field: due})


class Holder:
    """The rows a worker has claimed and not finished: their leases are renewed every `renew_every`
    seconds while the worker waits (for a claim, a download, the providers' answers), and handed back
    if it stops or fails.

    Renewal runs on the thread that claimed the rows (it owns the database connection) while the slow
    work runs on another, so a lease is as long as a few renewal periods, not as long as the slowest
    provider. A worker that dies stops renewing, and its rows are due again within the lease.
    """

    def __init__(self, lease: Lease, pks: Iterable[Any] = ()) -> None:
        if lease.renew_every is None:
            raise ValueError(f"the lease of {lease.model._meta.label}.{lease.field} is never renewed")
        self.lease, self.renew_every = lease, lease.renew_every
        self.pks: set[Any] = set(pks)
        self._renewed = time.monotonic()

    def add(self, pks: Iterable[Any]) -> None:
        self.pks.update(pks)

    def done(self, pks: Iterable[Any]) -> None:
        """These rows' work is recorded (their lease cleared with it): stop renewing them."""
        self.pks.difference_update(pks)

    def wait(self, future: Future[T]) -> T:
        """The future's result, renewing the leases while it runs."""
        while True:
            left = self.renew_every - (time.monotonic() - self._renewed)
            try:
                return future.result(timeout=max(0.1, left))
            except FutureTimeout:
                self.renew()

    def maybe_renew(self) -> None:
        """Renew if a renewal period has passed (for a worker that works through rows one by one)."""
        if self.pks and time.monotonic() - self._renewed >= self.renew_every:
            self.renew()

    def renew(self) -> None:
        self._renewed = time.monotonic()
        self.lease.renew(self.pks)

    def release(self, pks: Iterable[Any]) -> None:
        pks = list(pks)
        self.done(pks)
        self.lease.release(pks)

    def release_all(self) -> None:
        """Best effort after a failure: the connection may be what broke, so a broken one is replaced first."""
        pks, self.pks = list(self.pks), set()
        if not pks:
            return
        connection = connections[self.lease.model._default_manager.db]
        try:
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            self.lease.release(pks)
        except Exception:
            logger.warning(
                "could not release the leases of %d %s row(s); they expire within %s",
                len(pks),
                self.lease.model._meta.label,
                self.lease.length,
            )
