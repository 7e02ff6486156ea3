"""The publishing half of a Beat tick: due runs become Celery messages, many per round trip.

``RunPublisher.publish_due`` locks due ``planned`` and ``retrying`` runs (``FOR UPDATE SKIP
LOCKED``), sends them and marks them ``enqueued`` before the lock is released, so a run is
published by exactly one replica (the marking and commit may finish on another thread while
the caller plans the next batch: the locks are held until then); a run whose publisher died
is unlocked and still due, and the next tick of any replica publishes it. A run found too
late for its ``startingDeadline`` or ``expires`` is recorded ``missed`` or ``expired``
instead of being sent. A run whose task the tenancy policy forbids in its namespace (a row
written before the policy tightened, or straight into the store) is never sent: it is
recorded ``cancelled`` with the policy's reason (one cached lookup per run).

``beatkeeper_worker.messages`` builds each message; ``beatkeeper_worker.brokers`` sends them
in one batch.

This module plans nothing: which runs exist is ``beatkeeper.store.planning``'s business,
and the queries are ``beatkeeper.store.publishing``'s.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from celery import Celery

from beatkeeper.decisions.planning import too_late
from beatkeeper.observability import metrics
from beatkeeper.policy import ALLOW_ALL, Policy
from beatkeeper.spec import ScheduleSpec
from beatkeeper.states import RunState
from beatkeeper.store import publishing, transition_many
from beatkeeper.store.connections import Connection
from beatkeeper.store.publishing import PublishableRun
from beatkeeper_worker.brokers import Broker
from beatkeeper_worker.messages import Outgoing, Template, message_for, template_for

__all__ = ["OUTCOMES", "Phases", "Published", "RunPublisher", "Templates", "timed"]

log = logging.getLogger(__name__)


Templates = dict[tuple[uuid.UUID, str], Template]
"""Message templates by (schedule id, spec hash), kept for one tick only."""


Phases = collections.defaultdict[str, float]
"""Seconds spent per phase of a tick, for the stats log and the benchmark."""


@contextlib.contextmanager
def timed(phases: Phases, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] += time.perf_counter() - started


@dataclasses.dataclass(frozen=True)
class Published:
    run_ids: list[uuid.UUID]  # every due run this batch took
    sent: int
    dropped: int  # recorded missed, expired or cancelled instead

    @property
    def locked(self) -> int:
        return len(self.run_ids)


class RunPublisher:
    """Publishes due runs batch by batch for one Beat replica."""

    def __init__(self, app: Celery, publisher: Broker, *, policy: Policy = ALLOW_ALL) -> None:
        self._app = app
        self._publisher = publisher
        self._policy = policy
        self._default_queue: str = app.conf.task_default_queue

    def template(
        self, schedule_id: uuid.UUID, namespace: str, name: str, spec: ScheduleSpec
    ) -> Template:
        return template_for(schedule_id, namespace, name, spec, default_queue=self._default_queue)

    def publish_due(
        self, db: Connection, templates: Templates, phases: Phases, *, now: datetime, limit: int
    ) -> tuple[Published, Callable[[], float] | None]:
        """Lock and send up to ``limit`` due runs; and what marks them ``enqueued`` and commits.

        The second value (None when nothing was locked) must be called before ``db`` is used
        again; it may run on another thread, so the caller can plan meanwhile. Until it
        commits, the runs stay locked: no other replica can send them. It returns its seconds.
        """
        transaction = db.begin()
        try:
            with timed(phases, "publish_claim"):
                runs = publishing.claim_publishable_runs(db, now=now, limit=limit)
                if not runs:
                    transaction.commit()
                    return Published([], 0, 0), None
                self._fill(db, runs, templates)
            with timed(phases, "build"):
                outgoing, sent, dropped = self._messages(runs, templates, now=now)
            held: set[uuid.UUID] = set()
            if any(run.rate_key is not None for run in runs):
                with timed(phases, "rate_limit"):
                    dropped = _say_when_the_limit_held_it(db, runs, dropped)
                    outgoing, sent, held = _within_budget(db, runs, outgoing, sent, now=now)
            with timed(phases, "broker"):
                self._publisher.publish(outgoing)
                sent_at = datetime.now(UTC)  # the broker has them: they are enqueued from now
        except BaseException:
            transaction.rollback()
            raise
        _log_batch(sent, dropped)
        _count_outcomes(runs, dropped, held=held)
        _observe_lag(runs, set(sent), published_at=sent_at)

        def mark() -> float:
            started = time.perf_counter()
            try:
                publishing.mark_enqueued(db, sent, dropped, sent_at=sent_at, now=now)
                transaction.commit()
            except BaseException:
                with contextlib.suppress(Exception):  # the connection may be the broken part
                    transaction.rollback()
                raise
            return time.perf_counter() - started

        return Published([r.id for r in runs], len(sent), len(runs) - len(sent)), mark

    def republish_unstarted(
        self,
        db: Connection,
        templates: Templates,
        *,
        now: datetime,
        before: datetime,
        limit: int,
        queue_is_empty: Callable[[str], bool],
    ) -> int:
        """Send again runs ``enqueued`` before ``before`` and never started, whose queue is
        empty now (so their message is not merely waiting behind others); the number sent."""
        with db.begin():
            runs = publishing.claim_unstarted_runs(db, enqueued_before=before, limit=limit)
            if not runs:
                return 0
            self._fill(db, runs, templates)
            outgoing, sent, dropped = self._messages(runs, templates, now=now)
            for (state, reason), dropped_ids in dropped.items():
                transition_many(db, dropped_ids, state, now=now, error=reason)
            # Once per queue, not per run: each answer is a broker round trip.
            empty = {queue: queue_is_empty(queue) for queue in {m.queue for m in outgoing}}
            chosen = [
                (message, run_id)
                for message, run_id in zip(outgoing, sent, strict=True)
                if empty[message.queue]
            ]
            if not chosen:
                db.commit()
                return 0
            self._publisher.publish([message for message, _ in chosen])
            ids = [run_id for _, run_id in chosen]
            publishing.mark_republished(db, ids, now=datetime.now(UTC))
            db.commit()
        for run_id in ids:
            log.warning("run %s was enqueued long ago and never started: published again", run_id)
        return len(ids)

    def _messages(
        self, runs: list[PublishableRun], templates: Templates, *, now: datetime
    ) -> tuple[list[Outgoing], list[uuid.UUID], dict[tuple[RunState, str], list[uuid.UUID]]]:
        outgoing: list[Outgoing] = []
        sent: list[uuid.UUID] = []
        dropped: dict[tuple[RunState, str], list[uuid.UUID]] = {}
        for run in runs:
            forbidden = self._policy.forbids(namespace=run.namespace, task=run.task)
            if forbidden is not None:
                log.error(
                    "run %s of %s/%s not published: %s", run.id, run.namespace, run.name, forbidden
                )
                dropped.setdefault((RunState.CANCELLED, forbidden), []).append(run.id)
                continue
            template = templates.get((run.schedule_id, run.spec_hash))
            if template is None:
                dropped.setdefault(_UNREADABLE, []).append(run.id)
                continue
            late = too_late(
                run.due_at,
                starting_deadline=template.starting_deadline,
                expires=template.expires,
                first_attempt=run.state == RunState.PLANNED,
                now=now,
            )
            if late is not None:
                dropped.setdefault(late, []).append(run.id)
                continue
            outgoing.append(self._message(run, template, now=now))
            sent.append(run.id)
        return outgoing, sent, dropped

    def _fill(self, db: Connection, runs: list[PublishableRun], templates: Templates) -> None:
        """Templates for runs planned by another tick (a retry, another replica's orphan)."""
        missing = {r.schedule_id: r for r in runs if (r.schedule_id, r.spec_hash) not in templates}
        for schedule_id, spec_json in publishing.schedule_specs(db, list(missing)).items():
            run = missing[schedule_id]
            try:
                spec = ScheduleSpec.model_validate_json(spec_json)
            except ValueError as error:
                problem = "schedule %s/%s: stored spec unreadable: %s"
                log.error(problem, run.namespace, run.name, error)  # noqa: TRY400
                continue
            templates[schedule_id, run.spec_hash] = self.template(
                schedule_id, run.namespace, run.name, spec
            )

    def _message(self, run: PublishableRun, template: Template, *, now: datetime) -> Outgoing:
        return message_for(
            self._app,
            run_id=run.id,
            task=run.task,
            planned_at=run.planned_at,
            due_at=run.due_at,
            attempt=run.attempt,
            max_attempts=run.max_attempts,
            template=template,
            now=now,
            origin=self._publisher.origin,
        )


def _log_batch(sent: list[uuid.UUID], dropped: dict[tuple[RunState, str], list[uuid.UUID]]) -> None:
    """One line per batch naming its runs: the sent ones at DEBUG (a busy Beat sends
    thousands a second), the ones recorded instead of sent at INFO."""
    if sent and log.isEnabledFor(logging.DEBUG):
        log.debug("published %d runs: %s", len(sent), " ".join(map(str, sent)))
    for (state, reason), ids in dropped.items():
        log.info(
            "recorded %d runs %s instead of publishing them (%s): %s",
            *(len(ids), state.value, reason, " ".join(map(str, ids))),
        )


def _count_outcomes(
    runs: list[PublishableRun],
    dropped: dict[tuple[RunState, str], list[uuid.UUID]],
    *,
    held: set[uuid.UUID],
) -> None:
    """``beatkeeper_schedule_runs_total``: runs found too late, and runs their budget held."""
    by_id = {run.id: run for run in runs}
    for (state, _), ids in dropped.items():
        if state in OUTCOMES:
            for run_id in ids:
                metrics.count_schedule_run(state.value, by_id[run_id].namespace, by_id[run_id].name)
    for run_id in held:
        metrics.count_schedule_run("throttled", by_id[run_id].namespace, by_id[run_id].name)


#: The states of a run that did not run, counted by schedule (``cancelled`` is a user's doing).
OUTCOMES = frozenset({RunState.MISSED, RunState.SKIPPED, RunState.EXPIRED})


def _observe_lag(
    runs: list[PublishableRun], sent: set[uuid.UUID], *, published_at: datetime
) -> None:
    """How late each sent run left, after its due time (``beatkeeper_scheduling_lag_seconds``)."""
    for run in runs:
        if run.id in sent:
            metrics.SCHEDULING_LAG.observe(max(0.0, (published_at - run.due_at).total_seconds()))


def _within_budget(
    db: Connection,
    runs: list[PublishableRun],
    outgoing: list[Outgoing],
    sent: list[uuid.UUID],
    *,
    now: datetime,
) -> tuple[list[Outgoing], list[uuid.UUID], set[uuid.UUID]]:
    """The messages their rate limits let through now, and the runs held back: those stay
    ``planned``."""
    going = set(sent)
    held = publishing.spend_budgets(db, [run for run in runs if run.id in going], now=now)
    if not held:
        return outgoing, sent, set()
    kept = [(m, run_id) for m, run_id in zip(outgoing, sent, strict=True) if run_id not in held]
    return [m for m, _ in kept], [run_id for _, run_id in kept], set(held)


def _say_when_the_limit_held_it(
    db: Connection,
    runs: list[PublishableRun],
    dropped: dict[tuple[RunState, str], list[uuid.UUID]],
) -> dict[tuple[RunState, str], list[uuid.UUID]]:
    """A run found too late after its rate limit's budget was spent since it came due: say so."""
    by_id = {run.id: run for run in runs}
    said: dict[tuple[RunState, str], list[uuid.UUID]] = {}
    for (state, reason), ids in dropped.items():
        for run_id in ids:
            run = by_id[run_id]
            if state is RunState.MISSED and publishing.budget_spent_since(
                db, run, since=run.due_at
            ):
                why = f"{reason}: it waited for rateLimit {run.rate_key!r}"
                said.setdefault((state, why), []).append(run_id)
            else:
                said.setdefault((state, reason), []).append(run_id)
    return said


_UNREADABLE = (RunState.CANCELLED, "the schedule's stored spec cannot be read")
