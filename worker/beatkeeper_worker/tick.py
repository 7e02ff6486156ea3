"""One Beat tick: plan what is due, then publish it, batch by batch until nothing is due.

``Ticker.tick`` repeats: claim due schedules, plan their runs and advance them, commit; then
lock due runs, publish them with the run id as task id, mark them ``enqueued``, commit (the
queries and the reasoning for why replicas never duplicate nor lose an occurrence are in
``beatkeeper.store.planning`` and ``beatkeeper.store.publishing``; what each due schedule
gets is ``beatkeeper.decisions.planning``; how runs become messages is
``beatkeeper_worker.publish``). A tick hands control back after ``MAX_TICK_SECONDS`` even
with more due, so Beat's loop keeps turning. A tick starts by acting on people's cancels
of running runs when one is due for a look (``beatkeeper_worker.cancelling``); ``next_wake``
says when the next one is.

Marking a published batch ``enqueued`` is a database write as long as planning a batch, and
nothing after it needs its answer but the next use of the publishing connection. So a batch
of at least ``OVERLAP_FROM`` runs is marked on a helper thread while the main thread plans
the next batch (or, at the end of a tick, waits for the next due instant) on the planning
connection: two PostgreSQL backends work at once, and a busy tick's critical path loses
about a third. A smaller batch is marked at once: handing it over costs more than it saves.
``settle`` waits for the helper; the next publish, a sweep for lost messages and ``close``
do so first. The runs stay locked until the marking commits, so the exactly-once reasoning
does not change.

The ticker knows nothing of Celery's Beat loop: it never waits, and it leaves database and
broker errors to ``beatkeeper_worker.beat``, which waits between ticks and backs off;
it raises the database's as the store's ``DatabaseUnavailable`` or ``SchemaMissing``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from celery import Celery

from beatkeeper.decisions.planning import CATCH_UP_PER_TICK, Advance, DueSchedule, Plan, decide
from beatkeeper.observability import metrics
from beatkeeper.policy import ALLOW_ALL, Policy
from beatkeeper.recurrence import Recurrence
from beatkeeper.spec import ScheduleSpec
from beatkeeper.states import RunState
from beatkeeper.store import planning, transition_many
from beatkeeper.store.connections import Connection, Engine, HeldConnections, translated_errors
from beatkeeper_worker.brokers import Broker
from beatkeeper_worker.cancelling import Canceller
from beatkeeper_worker.publish import OUTCOMES, Phases, RunPublisher, Templates, timed
from beatkeeper_worker.specs import Specs

__all__ = ["BATCH_SIZE", "TickReport", "Ticker", "utcnow"]

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_TICK_SECONDS = 2.0  # hand control back to Celery's loop at least this often
PRUNE_EVERY = 25  # prune a schedule's history every this many occurrences
# A batch this large is marked on the helper thread; a smaller one at once, as handing it
# over costs more than its marking (measured at 1M hourly schedules: 3-6 runs a tick).
OVERLAP_FROM = 16


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class TickReport:
    claimed: int = 0
    planned: int = 0
    finished_at_birth: int = 0  # missed, skipped or expired when planned
    published: int = 0
    dropped: int = 0  # missed or expired when their turn to publish came
    cancelled: int = 0  # by concurrencyPolicy: Replace
    pruned: int = 0
    republished: int = 0  # enqueued long ago, never started: their message was lost
    phases: Phases = dataclasses.field(default_factory=lambda: Phases(float))

    def add(self, other: TickReport) -> None:
        for name in ("claimed", "planned", "finished_at_birth", "published", "dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cancelled += other.cancelled
        self.pruned += other.pruned
        self.republished += other.republished
        for phase, seconds in other.phases.items():
            self.phases[phase] += seconds


def _soonest(*moments: datetime | None) -> datetime | None:
    return min((m for m in moments if m is not None), default=None)


def _count_born_finished(claimed: list[_Claimed]) -> None:
    """``beatkeeper_schedule_runs_total``: runs planned already missed, skipped or expired."""
    for c in claimed:
        for run in c.plan.runs:
            if run.state in OUTCOMES:
                metrics.count_schedule_run(run.state.value, c.due.namespace, c.due.name)


@dataclasses.dataclass(frozen=True)
class _Claimed:
    due: DueSchedule
    spec: ScheduleSpec
    plan: Plan


class Ticker:
    """Plans and publishes what is due, batch by batch; knows nothing of Celery's loop."""

    def __init__(
        self,
        engine: Engine,
        app: Celery,
        publisher: Broker,
        *,
        batch_size: int = BATCH_SIZE,
        clock: Callable[[], datetime] = utcnow,
        redeliver_after: timedelta | None = None,
        queue_is_empty: Callable[[str], bool] | None = None,
        policy: Policy = ALLOW_ALL,
    ) -> None:
        """``redeliver_after`` and ``queue_is_empty`` (both or neither): publish again runs
        enqueued that long ago, never started, whose queue is empty (a lost message).
        ``policy``: runs it forbids are recorded cancelled, never published."""
        self._engine = engine
        self._connections = HeldConnections(engine)
        self._app = app
        self._runs = RunPublisher(app, publisher, policy=policy)
        self._cancels = Canceller(app)  # people's cancels of running runs
        self._specs = Specs()  # parsed once per spec version, not once per due tick
        self.batch_size = batch_size
        self._clock = clock
        self._redeliver_after = redeliver_after if queue_is_empty is not None else None
        self._queue_is_empty = queue_is_empty
        self._sweep_at = time.monotonic()
        # Marks a published batch enqueued while the next one is planned (see ``tick``).
        self._marker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beatkeeper-mark")
        self._marking: tuple[Future[float], list[uuid.UUID]] | None = None  # and its runs

    def tick(self) -> TickReport:
        """Plan and publish until nothing is due (or ``MAX_TICK_SECONDS`` passed).

        Raises ``DatabaseUnavailable`` or ``SchemaMissing`` for the database, the
        publisher's ``connection_errors`` for the broker.
        """
        with translated_errors(self._engine):
            return self._tick()

    def _tick(self) -> TickReport:
        report = TickReport()
        templates: Templates = {}
        started = time.monotonic()
        if self._cancels.due(now := self._clock()):
            self._cancels.act(self._connections.get("plan"), now)
        while True:
            more = self._plan_batch(templates, report)
            self._settle(report.phases)  # the last batch's marking: its connection is next
            db, now = self._connections.get("publish"), self._clock()
            published, mark = self._runs.publish_due(
                db, templates, report.phases, now=now, limit=self.batch_size
            )
            if mark is not None and published.locked >= OVERLAP_FROM:
                self._marking = self._marker.submit(mark), published.run_ids
            elif mark is not None:
                report.phases["publish_mark"] += mark()
            report.published += published.sent
            report.dropped += published.dropped
            # A run recorded missed or expired may have been what a queued run waited for.
            more = more or published.locked == self.batch_size or published.dropped > 0
            if not more or time.monotonic() - started > MAX_TICK_SECONDS:
                self._republish_unstarted(templates, report)
                return report

    def _republish_unstarted(self, templates: Templates, report: TickReport) -> None:
        """Now and then, publish again what was enqueued long ago and never started."""
        after, is_empty = self._redeliver_after, self._queue_is_empty
        if after is None or is_empty is None or time.monotonic() < self._sweep_at:
            return
        self._settle(report.phases)
        self._sweep_at = time.monotonic() + self._sweep_seconds()
        now = self._clock()
        with timed(report.phases, "republish"):
            report.republished += self._runs.republish_unstarted(
                self._connections.get("publish"),
                templates,
                now=now,
                before=now - after,
                limit=self.batch_size,
                queue_is_empty=is_empty,
            )

    def next_wake(self) -> datetime | None:
        """When something is next due, or when a run enqueued long ago may need sending again."""
        db = self._connections.get("watch")
        sent = self._marking[1] if self._marking else ()
        with translated_errors(self._engine):
            times = planning.wake_times(db, now=self._clock(), sent=sent)
        self._cancels.check_at = times.cancel_check
        wake = _soonest(times.next_due, times.cancel_check)
        oldest = times.oldest_unstarted
        if oldest is None or self._redeliver_after is None:
            return wake
        # Not before the next look is allowed: a queue still busy then means another wait.
        soonest = self._clock() + timedelta(seconds=self._sweep_seconds())
        lost = max(oldest + self._redeliver_after, soonest)
        return lost if wake is None else min(wake, lost)

    def _sweep_seconds(self) -> float:
        after = self._redeliver_after
        return 60.0 if after is None else min(60.0, max(1.0, after.total_seconds() / 4))

    def due_backlog(self) -> planning.DueRuns:
        """Due runs waiting to be published (after a tick: those it had no time for), and
        those held back by ``concurrencyPolicy: Queue`` or a ``rateLimit``."""
        db = self._connections.get("watch")
        with translated_errors(self._engine):
            return planning.count_due_runs(db, now=self._clock())

    def settle(self) -> None:
        """Wait until the last batch's runs are marked ``enqueued`` and committed (a tick
        returns with that still under way); raise what it raised."""
        with translated_errors(self._engine):
            self._settle(Phases(float))

    def _settle(self, phases: Phases) -> None:
        if self._marking is None:
            return
        marking, _ = self._marking
        try:
            with timed(phases, "publish_mark_wait"):
                phases["publish_mark"] += marking.result()
        except BaseException:
            # Interrupted while waiting (Beat's SIGTERM): still pending, so ``close`` waits.
            if marking.done():
                self._marking = None
            raise
        self._marking = None

    def close(self) -> None:
        """Drop the held connections (after an error, or at shutdown); the next tick reconnects.

        A batch still being marked is waited for first; if that fails, its runs stay due and
        are sent again under the same ids, which workers drop (invariant 3).
        """
        with contextlib.suppress(Exception):
            self.settle()
        self._connections.close()

    # --- planning ---------------------------------------------------------------------------

    def _plan_batch(self, templates: Templates, report: TickReport) -> bool:
        """Plan one batch; True if more may be due (a full batch, or a catch-up to go on)."""
        phases = report.phases
        db = self._connections.get("plan")
        with db.begin():
            now = self._clock()
            with timed(phases, "plan_claim"):
                due = planning.claim_due_schedules(db, now=now, limit=self.batch_size)
            if not due:
                return False
            with timed(phases, "decide"):
                claimed, advances = self._decide(db, due, templates, now=now)
            with timed(phases, "plan_record"):
                replaced = self._replace(db, claimed, now=now)
                runs = [run for c in claimed for run in c.plan.runs]
                advances += [c.plan.advance for c in claimed if c.plan.advance is not None]
                recorded = planning.record_plans(db, runs, advances, now=now)
                db.commit()
        report.claimed += len(due)
        report.planned += recorded.planned
        report.finished_at_birth += recorded.born - recorded.planned
        report.cancelled += len(replaced)
        _count_born_finished(claimed)
        self._revoke(replaced)
        report.pruned += self._prune(claimed)
        behind = any(a.next_due_at is not None and a.next_due_at <= now for a in advances)
        return len(due) == self.batch_size or behind

    def _decide(
        self, db: Connection, due: list[DueSchedule], templates: Templates, *, now: datetime
    ) -> tuple[list[_Claimed], list[Advance]]:
        """Plans of the readable schedules, and a stop for each unreadable one."""
        parsed = [(d, self._read(d)) for d in due]
        forbid = [d.id for d, r in parsed if r and r[0].concurrency_policy == "Forbid"]
        busy = {schedule_id for _, schedule_id, _ in planning.busy_runs(db, forbid)}
        claimed, stopped = [], []
        for d, read in parsed:
            if read is None:  # stop planning it rather than claim it again every tick
                stopped.append(Advance(d.id, None, None, d.planned_count, None))
                continue
            spec, recurrence = read
            plan = decide(d, spec, recurrence, now=now, busy=d.id in busy)
            if plan.jumped:
                log.warning(
                    "schedule %s/%s was down for more than %d occurrences; "
                    "the ones in between were not recorded (missedRuns: %s)",
                    *(d.namespace, d.name, CATCH_UP_PER_TICK, spec.missed_runs),
                )
            templates[d.id, d.spec_hash] = self._runs.template(d.id, d.namespace, d.name, spec)
            claimed.append(_Claimed(d, spec, plan))
        return claimed, stopped

    def _read(self, due: DueSchedule) -> tuple[ScheduleSpec, Recurrence] | None:
        try:
            return self._specs.read(due)
        except ValueError as error:
            log.error(  # noqa: TRY400 (a data problem, not a bug: no traceback)
                "schedule %s/%s has a stored spec beatkeeper cannot plan (%s); "
                "it is stopped until it is applied again",
                *(due.namespace, due.name, " ".join(str(error).split())),
            )
            return None

    def _replace(
        self, db: Connection, claimed: list[_Claimed], *, now: datetime
    ) -> list[uuid.UUID]:
        """Cancel the unfinished runs of Replace schedules that get a new run now."""
        replacing = [
            c.due.id
            for c in claimed
            if c.spec.concurrency_policy == "Replace"
            and any(run.state is RunState.PLANNED for run in c.plan.runs)
        ]
        old = [run_id for run_id, _, _ in planning.busy_runs(db, replacing)]
        reason = "replaced by a newer run (concurrencyPolicy: Replace)"
        return transition_many(db, old, RunState.CANCELLED, now=now, error=reason)

    def _revoke(self, run_ids: list[uuid.UUID]) -> None:
        if not run_ids:
            return
        try:
            self._app.control.revoke([str(i) for i in run_ids], terminate=True)
        except Exception as error:  # noqa: BLE001 (the database already says cancelled)
            log.warning("could not ask workers to revoke %d replaced runs: %s", len(run_ids), error)

    def _prune(self, claimed: list[_Claimed]) -> int:
        keep = [
            (c.due.id, c.spec.history.succeeded, c.spec.history.failed)
            for c in claimed
            if c.plan.advance is not None
            and c.plan.advance.planned_count // PRUNE_EVERY != c.due.planned_count // PRUNE_EVERY
        ]
        if not keep:
            return 0
        db = self._connections.get("plan")
        with db.begin():
            return planning.prune_history(db, keep)
