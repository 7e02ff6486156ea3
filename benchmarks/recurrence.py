"""Benchmark the recurrence engine against croniter and plain dateutil; print JSON.

Median microseconds per "next occurrence" query for cron, interval and RRULE schedules in
UTC and Europe/London, for schedules that started today and ten years ago, measured in
the same run as croniter's ``get_next`` on the same cron expressions and dateutil's
``rrule.after`` on the same rules. The targets:

* cron at least 5x faster than croniter (compared with a reused croniter object, the
  cheapest way to call it; a fresh croniter per query is reported too);
* every kind within 2x of its own cost when the schedule is ten years old;
* a due Beat tick (read the stored spec, ask for the next occurrence) of an RRULE with
  COUNT=100000 within 2x of the same rule with COUNT=100: the spec is read once per
  version, so COUNT is expanded once, not on every tick (the same schedule as a cron is
  reported for comparison).

Usage: ``python benchmarks/recurrence.py [--quick]`` (``--quick``: a smoke run).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from zoneinfo import ZoneInfo

from beatkeeper_worker.specs import Specs
from croniter import croniter

from beatkeeper.decisions.planning import DueSchedule
from beatkeeper.recurrence import CronTrigger, IntervalTrigger, Recurrence, RRuleTrigger
from beatkeeper.recurrence.simple import format_duration
from beatkeeper.spec import ScheduleSpec
from beatkeeper.store.schedules import spec_document, spec_hash

ZONES = ("UTC", "Europe/London")
CRONS = ("*/5 * * * *", "0 9 * * 1-5", "30 2 * * *", "0 0 1 * *", "0 */15 9-17 * * MON-FRI")
RULES = (
    "FREQ=MINUTELY;INTERVAL=5",
    "FREQ=DAILY;BYHOUR=9;BYMINUTE=30",
    "FREQ=WEEKLY;BYDAY=MO,WE,FR",
    "FREQ=MONTHLY;BYMONTHDAY=1",
    "FREQ=MONTHLY;BYDAY=-1FR",
)
INTERVALS = (timedelta(minutes=5), timedelta(hours=1), timedelta(days=1))
CRON_TARGET = 5.0
AGE_TARGET = 2.0
COUNT_TARGET = 2.0
DUE_TICKS = {  # the same every-second schedule, written three ways
    "cron": {"cron": "* * * * * *"},
    "rrule_count_100": {"rrule": "FREQ=SECONDLY;COUNT=100"},
    "rrule_count_100000": {"rrule": "FREQ=SECONDLY;COUNT=100000"},
}


class Settings:
    def __init__(self, *, quick: bool) -> None:
        self.points = 15 if quick else 120  # successive occurrences queried
        self.repeats = 3 if quick else 15  # timed calls per query point
        self.baseline_budget = 0.05 if quick else 0.4  # seconds per slow baseline


def median_us(queries: list[datetime], call: Callable[[datetime], object], repeats: int) -> float:
    """Median over query points of the mean cost of ``repeats`` calls at that point."""
    samples = []
    for moment in queries:
        started = time.perf_counter()
        for _ in range(repeats):
            call(moment)
        samples.append((time.perf_counter() - started) / repeats * 1e6)
    return round(statistics.median(samples), 2)


def budget_us(queries: list[datetime], call: Callable[[datetime], object], budget: float) -> float:
    """Like median_us for baselines that may take seconds: stop once ``budget`` is spent."""
    samples = []
    for moment in queries:
        started = time.perf_counter()
        call(moment)
        samples.append((time.perf_counter() - started) * 1e6)
        if sum(samples) / 1e6 > budget:
            break
    return round(statistics.median(samples), 2)


def chain(
    next_after: Callable[[datetime], datetime | None], start: datetime, count: int
) -> list[datetime]:
    """``count`` query instants: now, then each following occurrence."""
    queries = [start]
    while len(queries) < count:
        following = next_after(queries[-1])
        if following is None:
            break
        queries.append(following)
    return queries


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2)


def bench_cron(
    now: datetime, ten_years_ago: datetime, settings: Settings
) -> list[dict[str, object]]:
    rows = []
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        for expression in CRONS:
            trigger = CronTrigger(expression, zone)
            queries = chain(trigger.next_after, now, settings.points)
            ours = median_us(queries, trigger.next_after, settings.repeats)
            seconds_first = len(expression.split()) == 6
            reused = croniter(
                expression, queries[0].astimezone(zone), second_at_beginning=seconds_first
            )

            def reused_get_next(
                moment: datetime, it: croniter = reused, tz: ZoneInfo = zone
            ) -> object:
                it.set_current(moment.astimezone(tz), force=True)
                return it.get_next(datetime)

            def fresh_get_next(
                moment: datetime, e: str = expression, tz: ZoneInfo = zone
            ) -> object:
                first = len(e.split()) == 6
                return croniter(e, moment.astimezone(tz), second_at_beginning=first).get_next(
                    datetime
                )

            assert reused_get_next(queries[0]) == queries[1], (expression, zone_name)
            croniter_us = median_us(queries, reused_get_next, settings.repeats)
            fresh_us = median_us(queries, fresh_get_next, max(1, settings.repeats // 3))
            today = Recurrence(trigger, zone, start=now - timedelta(hours=1))
            old = Recurrence(trigger, zone, start=ten_years_ago)
            today_us = median_us(queries, today.next_after, settings.repeats)
            old_us = median_us(queries, old.next_after, settings.repeats)
            rows.append(
                {
                    "expression": expression,
                    "zone": zone_name,
                    "ours_us": ours,
                    "croniter_get_next_us": croniter_us,
                    "croniter_fresh_get_next_us": fresh_us,
                    "speedup_vs_croniter": ratio(croniter_us, ours),
                    "speedup_vs_fresh_croniter": ratio(fresh_us, ours),
                    "recurrence_today_us": today_us,
                    "recurrence_ten_years_old_us": old_us,
                    "ten_years_old_vs_today": ratio(old_us, today_us),
                }
            )
    return rows


def bench_rrule(
    now: datetime, ten_years_ago: datetime, settings: Settings
) -> list[dict[str, object]]:
    rows = []
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        for rule in RULES:
            row: dict[str, object] = {"rule": rule, "zone": zone_name}
            for label, started in (("today", now), ("ten_years_old", ten_years_ago)):
                dtstart = started.astimezone(zone).replace(
                    tzinfo=None, hour=8, minute=0, second=0, microsecond=0
                )
                trigger = RRuleTrigger(rule, dtstart, zone)
                queries = chain(trigger.next_after, now, settings.points)
                plain = trigger.plain_rule()

                def plain_after(
                    moment: datetime, rrule: object = plain, tz: ZoneInfo = zone
                ) -> object:
                    return rrule.after(moment.astimezone(tz).replace(tzinfo=None))  # type: ignore[attr-defined]

                row[f"{label}_us"] = median_us(queries, trigger.next_after, settings.repeats)
                row[f"dateutil_after_{label}_us"] = budget_us(
                    queries, plain_after, settings.baseline_budget
                )
            row["ten_years_old_vs_today"] = ratio(row["ten_years_old_us"], row["today_us"])  # type: ignore[arg-type]
            row["speedup_vs_dateutil_ten_years_old"] = ratio(
                row["dateutil_after_ten_years_old_us"],  # type: ignore[arg-type]
                row["ten_years_old_us"],  # type: ignore[arg-type]
            )
            rows.append(row)
    return rows


def bench_interval(
    now: datetime, ten_years_ago: datetime, settings: Settings
) -> list[dict[str, object]]:
    rows = []
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        for every in INTERVALS:
            row: dict[str, object] = {"every": format_duration(every), "zone": zone_name}
            for label, started in (
                ("today", now - timedelta(hours=3)),
                ("ten_years_old", ten_years_ago),
            ):
                trigger = IntervalTrigger(every, started.astimezone(zone) + timedelta(seconds=7))
                queries = chain(trigger.next_after, now, settings.points)
                row[f"{label}_us"] = median_us(queries, trigger.next_after, settings.repeats)
            row["ten_years_old_vs_today"] = ratio(row["ten_years_old_us"], row["today_us"])  # type: ignore[arg-type]
            rows.append(row)
    return rows


def bench_due_tick(now: datetime, settings: Settings) -> dict[str, object]:
    """Microseconds of one due tick's recurrence work per schedule: read, then next."""
    result: dict[str, object] = {}
    for label, trigger in DUE_TICKS.items():
        spec = ScheduleSpec.model_validate({"task": "bench", **trigger})
        document = spec_document(spec)
        due = DueSchedule(
            id=uuid.uuid4(),
            namespace="bench",
            name=label,
            spec_json=json.dumps(document),
            spec_hash=spec_hash(document),
            created_at=now,
            planned_count=0,
            next_run_at=now,
            next_due_at=now,
        )
        specs = Specs()
        started = time.perf_counter()
        specs.read(due)
        first_us = (time.perf_counter() - started) * 1e6
        queries = [now + timedelta(seconds=index) for index in range(min(settings.points, 90))]

        def tick(
            moment: datetime,
            read: Callable[[DueSchedule], object] = specs.read,
            due: DueSchedule = due,
        ) -> object:
            return read(due)[1].next_after(moment)  # type: ignore[index]

        result[label] = {
            "first_read_us": round(first_us, 1),
            "due_tick_us": median_us(queries, tick, settings.repeats),
        }
    cron_us = float(result["cron"]["due_tick_us"])  # type: ignore[index]
    small_us = float(result["rrule_count_100"]["due_tick_us"])  # type: ignore[index]
    count_us = float(result["rrule_count_100000"]["due_tick_us"])  # type: ignore[index]
    result["count_100000_vs_count_100"] = ratio(count_us, small_us)
    result["count_100000_vs_cron"] = ratio(count_us, cron_us)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: fewer points and repeats"
    )
    settings = Settings(quick=parser.parse_args().quick)
    now = datetime.now(UTC).replace(microsecond=0)
    ten_years_ago = now.replace(year=now.year - 10, day=min(now.day, 28))
    started = time.perf_counter()
    cron = bench_cron(now, ten_years_ago, settings)
    rrule = bench_rrule(now, ten_years_ago, settings)
    interval = bench_interval(now, ten_years_ago, settings)
    due_tick = bench_due_tick(now, settings)
    worst_age = {
        "cron": max(float(row["ten_years_old_vs_today"]) for row in cron),  # type: ignore[arg-type]
        "rrule": max(float(row["ten_years_old_vs_today"]) for row in rrule),  # type: ignore[arg-type]
        "interval": max(float(row["ten_years_old_vs_today"]) for row in interval),  # type: ignore[arg-type]
    }
    slowest_speedup = min(float(row["speedup_vs_croniter"]) for row in cron)  # type: ignore[arg-type]
    report = {
        "unit": "median microseconds per next-occurrence query",
        "python": platform.python_version(),
        "versions": {name: version(name) for name in ("croniter", "python-dateutil")},
        "quick": parser.parse_args().quick,
        "now": now.isoformat(),
        "cron": cron,
        "rrule": rrule,
        "interval": interval,
        "due_tick": due_tick,
        "targets": {
            "count_100000_due_tick_within_2x_of_count_100": float(
                due_tick["count_100000_vs_count_100"]  # type: ignore[arg-type]
            )
            <= COUNT_TARGET,
            "cron_at_least_5x_faster_than_croniter": slowest_speedup >= CRON_TARGET,
            "slowest_cron_speedup_vs_croniter": slowest_speedup,
            "ten_years_old_within_2x_of_today": all(
                value <= AGE_TARGET for value in worst_age.values()
            ),
            "worst_ten_years_old_vs_today": worst_age,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
