"""scoring's Prometheus metrics: leads scored and qualified per model version, and how long scoring takes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

logger = logging.getLogger(__name__)

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

_PENDING = "baton_scoring.after_commit"


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Runs ``fn`` once the session's current transaction commits; never if it rolls back.

    Counters count what the database kept: a batch that rolls back and is applied again counts once.
    """
    sync_session = session.sync_session
    pending: list[Callable[[], None]] | None = sync_session.info.get(_PENDING)
    if pending is None:
        pending = sync_session.info[_PENDING] = []
        event.listen(sync_session, "after_commit", _run_pending)
        event.listen(sync_session, "after_transaction_end", _forget_pending)
    pending.append(fn)


def scored(session: AsyncSession, *, model_version: int) -> None:
    """Counts a published score once its transaction commits."""
    after_commit(session, LEADS_SCORED.labels(model_version=str(model_version)).inc)


def qualified(session: AsyncSession, *, model_version: int, reason: str) -> None:
    """Counts a new MQL once its transaction commits."""
    after_commit(session, LEADS_QUALIFIED.labels(model_version=str(model_version), reason=reason).inc)


def _run_pending(sync_session: Session) -> None:
    pending: list[Callable[[], None]] = sync_session.info[_PENDING]
    ready, pending[:] = list(pending), []
    for fn in ready:
        try:
            fn()
        except Exception:
            logger.exception("an after-commit callback failed")


def _forget_pending(sync_session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        sync_session.info[_PENDING].clear()
