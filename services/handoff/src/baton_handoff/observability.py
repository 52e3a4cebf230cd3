"""handoff's Prometheus metrics: leads routed and how fast, SLA breaches, and gauges read from the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.failures import is_transient
from baton.runtime import ServiceRuntime
from baton_handoff.models import ACCEPT_CLOCK_RUNNING, IN_QUEUE, TOUCH_CLOCK_RUNNING, Assignment, Rep, RepWorkload

logger = logging.getLogger(__name__)

GAUGES_REFRESH_SECONDS = 5.0
# Prometheus treats an empty label value as the label being absent: leads queued for no team in particular.
NO_TEAM = ""

ASSIGNMENTS = Counter("baton_handoff_assignments_total", "Leads handed to a rep.", ["rule", "method"])
ROUTING_SECONDS = Histogram(
    "baton_handoff_routing_seconds",
    "Time to route one lead: rule matching, eligibility and the method's choice, under the routing lock.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SLA_BREACHES = Counter("baton_handoff_sla_breaches_total", "SLA deadlines missed.", ["sla", "action"])
OPEN_ASSIGNMENTS = Gauge("baton_handoff_open_assignments", "Open assignments each rep holds.", ["rep_id"])
SLA_AT_RISK = Gauge(
    "baton_handoff_sla_at_risk", "Open assignments past 80% of a running SLA clock, per team.", ["team"]
)
QUEUE_DEPTH = Gauge("baton_handoff_queue_depth", "Leads waiting in a team's fallback queue.", ["team"])


def routed(*, rule: str, method: str, seconds: float) -> None:
    """Counts a lead handed to a rep and how long routing it took."""
    ASSIGNMENTS.labels(rule=rule, method=method).inc()
    ROUTING_SECONDS.observe(seconds)


def breached(*, sla: str, action: str) -> None:
    """Counts a missed SLA deadline and what was done about it."""
    SLA_BREACHES.labels(sla=sla, action=action).inc()


async def gauge_readings(session: AsyncSession, *, now: datetime) -> dict[str, dict[str, float]]:
    """What the gauges should show now: open assignments per rep, at-risk and queued leads per team."""
    reps = await session.execute(
        select(Rep.rep_id, Rep.team, func.coalesce(RepWorkload.open_assignments, 0)).outerjoin(
            RepWorkload, RepWorkload.rep_id == Rep.rep_id
        )
    )
    open_assignments: dict[str, float] = {}
    teams: dict[str, float] = {}
    for rep_id, team, held in reps:
        open_assignments[rep_id] = held
        teams[team or NO_TEAM] = 0
    at_risk_now = or_(
        and_(ACCEPT_CLOCK_RUNNING, Assignment.accept_at_risk_at <= now),
        and_(TOUCH_CLOCK_RUNNING, Assignment.touch_at_risk_at <= now),
    )
    at_risk = dict(teams)
    at_risk.update(await _per_team(session, at_risk_now))
    queued = dict(teams)
    queued.update(await _per_team(session, IN_QUEUE))
    return {"open_assignments": open_assignments, "sla_at_risk": at_risk, "queue_depth": queued}


async def _per_team(session: AsyncSession, condition: Any) -> dict[str, float]:
    counted = await session.execute(select(Assignment.team, func.count()).where(condition).group_by(Assignment.team))
    totals: dict[str, float] = {}
    for team, count in counted:
        totals[team or NO_TEAM] = totals.get(team or NO_TEAM, 0) + count
    return totals


_shown: dict[str, set[str]] = {}


def _show(gauge: Gauge, name: str, readings: Mapping[str, float]) -> None:
    # A label set that is gone from the database (a deleted rep, a team with no reps and nothing queued)
    # leaves the gauge rather than showing its last value forever.
    for gone in _shown.get(name, set()) - readings.keys():
        gauge.remove(gone)
    for label, value in readings.items():
        gauge.labels(label).set(value)
    _shown[name] = set(readings)


async def update_gauges(session: AsyncSession, *, now: datetime) -> None:
    """Sets the gauges from the database as it stands."""
    readings = await gauge_readings(session, now=now)
    _show(OPEN_ASSIGNMENTS, "open_assignments", readings["open_assignments"])
    _show(SLA_AT_RISK, "sla_at_risk", readings["sla_at_risk"])
    _show(QUEUE_DEPTH, "queue_depth", readings["queue_depth"])


async def refresh_gauges(runtime: ServiceRuntime) -> None:
    """Keeps the gauges current, every few seconds, for as long as the service runs."""
    while True:
        try:
            async with runtime.sessions() as session:
                await update_gauges(session, now=runtime.clock())
        except Exception as exc:
            # The gauges keep their last values until the database answers again.
            if not is_transient(exc):
                raise
            logger.warning("refreshing the gauges failed; trying again", exc_info=True)
        await asyncio.sleep(GAUGES_REFRESH_SECONDS)
