"""The Schedule's status as the operator writes it and `kubectl get` reads it.

One model, so the CRD's status schema, the operator's status writer and the printer
columns agree. Times are RFC 3339 strings in UTC, as Kubernetes API conventions ask.
Pure: no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Status):
    """A Kubernetes-style condition; beatkeeper writes `Ready`."""

    type: str = Field(max_length=64, description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="", max_length=128, description="CamelCase reason, e.g. InvalidSpec."
    )
    message: str = Field(default="", max_length=1024, description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None,
        alias="lastTransitionTime",
        max_length=64,
        description="When status last changed.",
    )
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The generation this describes."
    )


class RunSummary(_Status):
    """The latest run of the schedule."""

    id: str = Field(max_length=64, description="Run id, also the Celery task id.")
    planned_time: str = Field(alias="plannedTime", max_length=64, description="Occurrence.")
    state: str = Field(max_length=32, description="planned, enqueued, running, succeeded, ...")
    attempt: int = Field(default=1, description="Attempt number, from 1.")
    start_time: str | None = Field(
        default=None, alias="startTime", max_length=64, description="When the attempt started."
    )
    finish_time: str | None = Field(
        default=None, alias="finishTime", max_length=64, description="When the run finished."
    )
    message: str | None = Field(default=None, max_length=1024, description="Error or result.")


class RecentRun(_Status):
    """One of the schedule's latest runs, newest first (``kubectl beatkeeper runs``)."""

    id: str = Field(max_length=64, description="Run id, also the Celery task id.")
    planned_time: str = Field(alias="plannedTime", max_length=64, description="Occurrence.")
    state: str = Field(max_length=32, description="planned, enqueued, running, succeeded, ...")
    attempt: int = Field(default=1, description="Attempt number, from 1.")
    finish_time: str | None = Field(
        default=None, alias="finishTime", max_length=64, description="When the run finished."
    )
    error: str | None = Field(default=None, max_length=256, description="Why it failed.")


class ActiveRun(_Status):
    """A run that is enqueued, running or waiting for a retry."""

    id: str = Field(max_length=64, description="Run id.")
    planned_time: str = Field(alias="plannedTime", max_length=64, description="Occurrence.")


class ScheduleStatus(_Status):
    """What beatkeeper reports about a Schedule."""

    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, description="Ready, with reason and message."
    )
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The spec generation applied."
    )
    trigger: str | None = Field(default=None, max_length=256, description="When it runs.")
    next_run_times: list[str] = Field(
        default_factory=list, alias="nextRunTimes", max_length=10, description="Next few runs."
    )
    last_schedule_time: str | None = Field(
        default=None, alias="lastScheduleTime", max_length=64, description="Last planned run."
    )
    last_successful_time: str | None = Field(
        default=None, alias="lastSuccessfulTime", max_length=64, description="Last success."
    )
    last_run: RunSummary | None = Field(
        default=None, alias="lastRun", description="The latest run."
    )
    recent_runs: list[RecentRun] = Field(
        default_factory=list,
        alias="recentRuns",
        max_length=10,
        description="The latest runs, newest first.",
    )
    last_resume: str | None = Field(
        default=None,
        alias="lastResume",
        max_length=256,
        description="The beatkeeper.io/resume token the operator last acted on.",
    )
    active: list[ActiveRun] = Field(
        default_factory=list, max_length=100, description="Runs enqueued, running or retrying."
    )
    counts: dict[str, int] = Field(
        default_factory=dict, description="Runs over the schedule's lifetime, per final state."
    )
    held: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Due runs waiting on purpose, by reason: queue (behind an earlier run, "
            "concurrencyPolicy: Queue) or rateLimit (the shared budget is spent for now)."
        ),
    )
