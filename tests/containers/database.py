"""Read a release's runs table from the host, as an operator would with psql.

The URL is the one the release's pods get (the rendered Secret's ``database-url``), with the
Service name replaced by the PostgreSQL pod's address: the host has no cluster DNS.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from cluster import Cluster
from pods import secret_data
from sqlalchemy import Engine, create_engine, make_url, text

FINAL_STATES = ("succeeded", "failed", "dead", "skipped", "missed", "expired", "cancelled")


class Database:
    def __init__(self, url: str, schema: str) -> None:
        self.engine: Engine = create_engine(
            url, connect_args={"options": f"-c search_path={schema}"}, pool_pre_ping=True
        )

    @classmethod
    def of_release(cls, cluster: Cluster, *, schema: str = "beatkeeper") -> Database:
        url = make_url(
            secret_data(cluster.objects["Secret", "bk-beatkeeper-postgresql"])["database-url"]
        )
        (pod,) = cluster.pods_of("StatefulSet", "bk-beatkeeper-postgresql")
        return cls(url.set(host=pod.ip).render_as_string(hide_password=False), schema)

    def close(self) -> None:
        self.engine.dispose()

    def _scalar(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(sql), params).scalar_one())

    def count_runs(self, *, namespace: str, state: str) -> int:
        return self._scalar(
            "SELECT count(*) FROM runs JOIN schedules s ON s.id = runs.schedule_id"
            " WHERE s.namespace = :namespace AND runs.state = :state",
            namespace=namespace,
            state=state,
        )

    def count_unfinished(self, *, namespace: str) -> int:
        return self._scalar(
            "SELECT count(*) FROM runs JOIN schedules s ON s.id = runs.schedule_id"
            " WHERE s.namespace = :namespace AND NOT (runs.state = ANY(:final))",
            namespace=namespace,
            final=list(FINAL_STATES),
        )

    def suspended(self, *, namespace: str) -> int:
        return self._scalar(
            "SELECT count(*) FROM schedules WHERE namespace = :namespace AND suspended",
            namespace=namespace,
        )

    def runs(self, *, namespace: str) -> list[Any]:
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT s.name, runs.planned_at, runs.state, runs.attempt FROM runs"
                        " JOIN schedules s ON s.id = runs.schedule_id"
                        " WHERE s.namespace = :namespace ORDER BY s.name, runs.planned_at"
                    ),
                    {"namespace": namespace},
                )
            )

    def scalar(self, sql: str) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql)).scalar_one()


def runs_by_schedule(rows: Iterable[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.name].append(row)
    return dict(grouped)
