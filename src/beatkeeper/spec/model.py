"""The Schedule resource as frozen pydantic models: the one definition of every field.

The validator (`beatkeeper.spec.validate`), the CRD generator (`beatkeeper.crd`) and the
store all read these classes, so a field's meaning, default, bounds and description live
in exactly one place. Field names are the manifest's camelCase names. Cross-field rules
that need the recurrence engine live in `validate`, not here. Pure: no I/O.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from beatkeeper.spec.names import DEFAULT_NAMESPACE
from beatkeeper.spec.types import (
    Duration,
    Instant,
    JsonList,
    JsonObject,
    LocalDate,
    LocalOrInstant,
    PositiveDuration,
    ZoneName,
)

API_VERSION = "beatkeeper.io/v1alpha1"
#: The API group and version of ``API_VERSION``, as Kubernetes clients ask for them.
GROUP, VERSION = API_VERSION.split("/")
#: The Schedule resource's plural, its name in API paths and RBAC rules.
PLURAL = "schedules"
KIND = "Schedule"
TRIGGER_FIELDS = ("cron", "interval", "rrule", "at")
#: Celery task names: dotted Python-like names, the colon and dash some projects use.
TASK_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:\-]*$"
#: Celery queue names: letters, digits, ".", "_" and "-", as brokers accept everywhere.
QUEUE_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.\-]{0,61}[A-Za-z0-9])?$"
#: Kubernetes object names: a DNS-1123 subdomain; namespaces: a DNS-1123 label.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: Rate limit keys: letters, digits, ".", "_", "-" and "/".
RATE_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_./\-]*[A-Za-z0-9])?$"


class _Strict(BaseModel):
    """Unknown fields are errors: a typo must never silently change a schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Backoff(_Strict):
    """How long to wait between attempts: exponential with full jitter."""

    initial: PositiveDuration = Field(
        default=timedelta(seconds=10),
        description="Wait before the second attempt.",
        json_schema_extra={"default": "10s"},
    )
    max: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="The longest wait between two attempts.",
        json_schema_extra={"default": "1h"},
    )
    multiplier: float = Field(
        default=2.0, ge=1.0, le=10.0, description="Growth of the wait per attempt (1 to 10)."
    )

    @model_validator(mode="after")
    def _initial_within_max(self) -> Backoff:
        if self.initial > self.max:
            raise ValueError("initial must not be longer than max")
        return self


class Retry(_Strict):
    """Attempts of one run; the waiting attempt is kept in PostgreSQL until it is due."""

    max_attempts: int = Field(
        default=1,
        ge=1,
        le=100,
        alias="maxAttempts",
        description="Attempts in all, including the first (1 means no retry).",
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Wait between attempts.")


class Exclude(_Strict):
    """Occurrences to skip, read in the schedule's time zone."""

    dates: list[LocalDate] = Field(
        default_factory=list, max_length=366, description="Local calendar dates to skip."
    )
    months: list[Annotated[int, Field(ge=1, le=12)]] = Field(
        default_factory=list, max_length=12, description="Months to skip, 1 (January) to 12."
    )


class History(_Strict):
    """How many finished runs to keep per schedule; older ones are pruned."""

    succeeded: int = Field(default=100, ge=0, le=100_000, description="Succeeded runs to keep.")
    failed: int = Field(
        default=100, ge=0, le=100_000, description="Failed, dead and missed runs to keep."
    )


class RateLimit(_Strict):
    """At most `runs` runs sent in any window of `per`, shared by every Schedule of the
    namespace with the same `key`, across all Beat replicas; the rest wait their turn."""

    key: str = Field(
        min_length=1,
        max_length=63,
        pattern=RATE_KEY_PATTERN,
        description="Name of the shared budget (Schedules of one namespace share it by key).",
    )
    runs: int = Field(ge=1, le=100_000, description="Runs sent at most per window.")
    per: PositiveDuration = Field(description="Length of the sliding window, e.g. 1m or 1h.")


class ScheduleSpec(_Strict):
    """What runs (a Celery task) and when (exactly one of cron, interval, rrule, at)."""

    task: str = Field(
        min_length=1, max_length=255, pattern=TASK_PATTERN, description="Celery task name."
    )
    args: JsonList = Field(default_factory=list, description="Positional arguments (JSON).")
    kwargs: JsonObject = Field(default_factory=dict, description="Keyword arguments (JSON).")
    cron: str | None = Field(
        default=None,
        max_length=256,
        description="Cron expression: 5 fields, or 6 with seconds first; Vixie semantics.",
    )
    interval: PositiveDuration | None = Field(
        default=None, description="Elapsed time between runs from startTime (or creation)."
    )
    rrule: str | None = Field(
        default=None,
        max_length=1024,
        description="RFC 5545 RRULE; DTSTART is startTime (or creation) in timeZone.",
    )
    at: LocalOrInstant | None = Field(
        default=None,
        description="One instant: RFC 3339, or a local time read in timeZone.",
    )
    time_zone: ZoneName = Field(
        default="UTC", alias="timeZone", description="IANA time zone of cron, rrule and dates."
    )
    start_time: LocalOrInstant | None = Field(
        default=None,
        alias="startTime",
        description="No run before this: RFC 3339, or a local time read in timeZone.",
    )
    end_time: LocalOrInstant | None = Field(
        default=None,
        alias="endTime",
        description="No run after this: RFC 3339, or a local time read in timeZone.",
    )
    max_runs: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        alias="maxRuns",
        description="Stop after this many occurrences.",
    )
    exclude: Exclude = Field(default_factory=Exclude, description="Dates and months to skip.")
    jitter: Duration | None = Field(
        default=None, description="Deterministic delay per occurrence, at most this long."
    )
    suspend: bool = Field(default=False, description="Stop planning new runs.")
    concurrency_policy: Literal["Allow", "Forbid", "Replace", "Queue"] = Field(
        default="Allow",
        alias="concurrencyPolicy",
        description=(
            "Allow; Forbid (skip while a run is active); Replace (revoke it); "
            "Queue (wait for it: every occurrence runs, one at a time, in order)."
        ),
    )
    starting_deadline: PositiveDuration | None = Field(
        default=None,
        alias="startingDeadline",
        description="A run that cannot start within this of its time is recorded as missed.",
    )
    missed_runs: Literal["RunLatest", "RunAll", "Skip"] = Field(
        default="RunLatest",
        alias="missedRuns",
        description="After downtime: RunLatest (one run), RunAll (each missed one), Skip.",
    )
    queue: str | None = Field(
        default=None, max_length=63, pattern=QUEUE_PATTERN, description="Celery queue."
    )
    priority: int | None = Field(
        default=None,
        ge=0,
        le=9,
        description=(
            "Message priority 0-9: among the runs waiting in a queue, 0 (or none) goes first"
            " and 9 last, on Redis (in steps 0-2, 3-5, 6-8, 9) and RabbitMQ alike."
        ),
    )
    expires: PositiveDuration | None = Field(
        default=None, description="Discard a run not started within this of its time."
    )
    time_limit: PositiveDuration | None = Field(
        default=None, alias="timeLimit", description="Hard time limit of one attempt."
    )
    soft_time_limit: PositiveDuration | None = Field(
        default=None, alias="softTimeLimit", description="Soft time limit of one attempt."
    )
    retry: Retry = Field(default_factory=Retry, description="Attempts and backoff.")
    pause_after_failures: int | None = Field(
        default=None,
        ge=1,
        alias="pauseAfterFailures",
        description="Suspend the schedule after this many consecutive failed runs.",
    )
    history: History = Field(default_factory=History, description="Finished runs to keep.")
    rate_limit: RateLimit | None = Field(
        default=None,
        alias="rateLimit",
        description="A budget of runs shared by the namespace's Schedules with the same key.",
    )

    @model_validator(mode="after")
    def _exactly_one_trigger(self) -> ScheduleSpec:
        wrong = trigger_problem(
            [name for name in TRIGGER_FIELDS if getattr(self, name) is not None]
        )
        if wrong:
            raise ValueError(wrong)
        return self

    @model_validator(mode="after")
    def _jitter_within_interval(self) -> ScheduleSpec:
        # A longer jitter could move an occurrence past the next one: runs out of order.
        if self.interval is not None and self.jitter is not None and self.jitter >= self.interval:
            raise ValueError("jitter must be shorter than interval")
        return self

    @property
    def trigger_field(self) -> str:
        """Which of cron, interval, rrule, at this schedule uses."""
        return next(name for name in TRIGGER_FIELDS if getattr(self, name) is not None)


def trigger_problem(given: list[str]) -> str | None:
    """What is wrong with a spec giving these of ``TRIGGER_FIELDS``, if anything."""
    if len(given) == 1:
        return None
    found = f"found {' and '.join(given)}" if given else "found none"
    return f"exactly one of cron, interval, rrule, at is required ({found})"


class Metadata(BaseModel):
    """The parts of Kubernetes object metadata beatkeeper reads; the rest is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)
    namespace: str = Field(
        default=DEFAULT_NAMESPACE, min_length=1, max_length=63, pattern=NAMESPACE_PATTERN
    )
    uid: str | None = Field(default=None, max_length=64)
    generation: int | None = Field(default=None, ge=0)
    creation_timestamp: Instant | None = Field(default=None, alias="creationTimestamp")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("uid")
    @classmethod
    def _uid_is_a_uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a UUID: Kubernetes assigns one; leave uid out to apply "
                "a manifest by namespace and name"
            ) from None
        return value


class ScheduleManifest(BaseModel):
    """A whole `kind: Schedule` document as `kubectl apply` would send it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    api_version: Literal["beatkeeper.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Schedule"]
    metadata: Metadata
    spec: ScheduleSpec
    #: Read back from `kubectl get -o yaml` output; never validated or applied.
    status: JsonObject | None = None
