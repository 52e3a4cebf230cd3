"""scoring's Prometheus metrics: leads scored and qualified per model version, and how long scoring takes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db import after_commit

LEADS_SCORED = Counter(
    "baton_scoring_leads_scored_total",
    "Scores published: a changed score or grade, or the one that made an MQL.",
    ["model_version"],
)
LEADS_QUALIFIED = Counter(
    "baton_scoring_leads_qualified_total", "Leads that became MQLs, once per cycle.", ["model_version", "reason"]
)
SCORING_SECONDS = Histogram(
    "baton_scoring_latency_seconds",
    "Time to score one lead: its account's engagement, the rules and the decision.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


def scored(session: AsyncSession, *, model_version: int) -> None:
    """Counts a published score once its transaction commits."""
    after_commit(session, LEADS_SCORED.labels(model_version=str(model_version)).inc)


def qualified(session: AsyncSession, *, model_version: int, reason: str) -> None:
    """Counts a new MQL once its transaction commits."""
    after_commit(session, LEADS_QUALIFIED.labels(model_version=str(model_version), reason=reason).inc)
