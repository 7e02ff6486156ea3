"""Weekly content optimisation: how each content template performed, and what changes.

``optimize_content`` (Sundays at 03:00 UTC) reviews the ``analysis_period_days`` days
before the run's planned date: per template, the outlooks generated, the share viewed
(view rate), the share whose suggested actions were completed (engagement rate) and the
average rating. A template below ``min_view_rate`` over at least ``min_outlooks`` outlooks
is low-performing: it is put into an A/B test and its weight (how often generation picks
it) is halved, never below 0.1. One review per template and period end (the primary key
of ``template_reviews``): a repeated or retried run changes no weight twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from celery import shared_task
from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from beatkeeper_examples import db, tables
from beatkeeper_examples.clock import planned_instant

__all__ = ["optimize_content"]

log = logging.getLogger(__name__)
o, r, ct = tables.daily_outlooks, tables.template_reviews, tables.content_templates


@shared_task(name="examples.outlook.optimize_content")  # type: ignore[untyped-decorator]
def optimize_content(
    analysis_period_days: int = 7,
    min_view_rate: float = 0.5,
    min_outlooks: int = 20,
    now: str | None = None,
) -> dict[str, Any]:
    """Review the templates over the period; put the low performers into an A/B test."""
    end = planned_instant(now).date()
    start = end - timedelta(days=analysis_period_days)
    with db.connect().begin() as conn:
        stats = conn.execute(_per_template(start, end)).all()
        reviews = [_review(row, end, min_view_rate, min_outlooks) for row in stats]
        new: Sequence[Any] = []
        if reviews:
            new = conn.execute(
                pg_insert(r).on_conflict_do_nothing().returning(r.c.template, r.c.low_performing),
                reviews,
            ).all()
        low = [template for template, flagged in new if flagged]
        if low:
            conn.execute(
                update(ct)
                .where(ct.c.name.in_(low))
                .values(weight=func.greatest(ct.c.weight / 2, 0.1), in_ab_test=True)
            )
    summary = {
        "success": True,
        "analysis_period": {
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "days": analysis_period_days,
        },
        "performance_metrics": _overall(stats),
        "low_performing_content": sorted(x["template"] for x in reviews if x["low_performing"]),
        "ab_tests_triggered": len(low),
        "templates_updated": len(low),
    }
    log.info("content review %s..%s: %d low-performing", start, end, len(low))
    return summary


def _per_template(start: date, end: date) -> Any:
    return (
        select(
            o.c.template,
            func.count().label("outlooks"),
            _rate(o.c.viewed_at.is_not(None)).label("view_rate"),
            _rate(o.c.actions_completed).label("engagement_rate"),
            func.avg(o.c.rating).label("average_rating"),
        )
        .where(o.c.outlook_date >= start, o.c.outlook_date < end)
        .group_by(o.c.template)
    )


def _rate(flag: ColumnElement[bool]) -> ColumnElement[float]:
    return func.avg(case((flag, 1.0), else_=0.0))


def _review(row: Any, end: date, min_view_rate: float, min_outlooks: int) -> dict[str, Any]:
    return {
        "template": row.template,
        "period_end": end,
        "outlooks": row.outlooks,
        "view_rate": float(row.view_rate),
        "engagement_rate": float(row.engagement_rate),
        "average_rating": None if row.average_rating is None else float(row.average_rating),
        "low_performing": row.outlooks >= min_outlooks and row.view_rate < min_view_rate,
    }


def _overall(stats: Sequence[Any]) -> dict[str, Any]:
    total = sum(row.outlooks for row in stats)
    if not total:
        return {"total_outlooks": 0}
    return {
        "total_outlooks": total,
        "view_rate": _weighted(stats, "view_rate", total),
        "engagement_rate": _weighted(stats, "engagement_rate", total),
    }


def _weighted(stats: Sequence[Any], name: str, total: int) -> float:
    share = sum(float(getattr(row, name)) * row.outlooks for row in stats) / total
    return round(float(share), 4)
