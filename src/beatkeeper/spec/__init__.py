"""The Schedule resource: its model, its validation and what its timing fields mean.

`validate_manifest` is the door every manifest comes through, from `kubectl`, from
`beatkeeper apply` or from `beatkeeper dev`. Pure: no kopf, Celery, SQLAlchemy or I/O.
"""

from beatkeeper.spec.model import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Backoff,
    Exclude,
    History,
    Metadata,
    Retry,
    ScheduleManifest,
    ScheduleSpec,
)
from beatkeeper.spec.names import DEFAULT_NAMESPACE, split_name
from beatkeeper.spec.timing import recurrence_of, to_instant
from beatkeeper.spec.validate import MAX_PAYLOAD_BYTES, Validated, validate_manifest
from beatkeeper.spec.values import MAX_DEPTH

__all__ = [
    "API_VERSION",
    "DEFAULT_NAMESPACE",
    "GROUP",
    "KIND",
    "MAX_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "PLURAL",
    "VERSION",
    "Backoff",
    "Exclude",
    "History",
    "Metadata",
    "Retry",
    "ScheduleManifest",
    "ScheduleSpec",
    "Validated",
    "recurrence_of",
    "split_name",
    "to_instant",
    "validate_manifest",
]
