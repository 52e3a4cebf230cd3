"""GET /v1/trends: MQLs, SLA compliance and speed-to-lead day by day, for the dashboard's trend charts."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from fastapi import APIRouter
from pydantic import BaseModel, Field

from baton.errors import Unprocessable
from baton.web import MetricsReaderDep, NowDep, SessionDep
from baton_metrics.api.deps import AskedFilter, callers_filter
from baton_metrics.api.kpis import From, To
from baton_metrics.domain import SPEED_TO_LEAD, add_to_totals, duration_summary, kpi_day, sla_compliance
from baton_metrics.models import DurationBucket
from baton_metrics.schemas import KpiTotals
from baton_metrics.service import bucket_sums, counter_sums

router = APIRouter(prefix="/v1", tags=["kpis"])

DEFAULT_DAYS = 14
MAX_DAYS = 366
TREND_KPIS = (
    "received",
    "mql",
    "assigned",
    "accept_sla_met",
    "accept_sla_breached",
    "touch_sla_met",
    "touch_sla_breached",
)


class DayTrend(BaseModel):
    """One UTC day's figures."""

    day: date
    received: int
    mql: int
    assigned: int
    sla_compliance: float | None = Field(description="Met / (met + breached), accept and touch together; null if none.")
    speed_to_lead_p50_minutes: float | None = Field(description="Median assignment → first touch; null if none.")


class Trends(BaseModel):
    """Figures per UTC day over a range, every day present (zero when nothing happened)."""

    from_: date = Field(serialization_alias="from")
    to: date
    days: list[DayTrend]


@router.get("/trends", response_model_by_alias=True)
async def get_trends(
    session: SessionDep,
    principal: MetricsReaderDep,
    now: NowDep,
    asked: AskedFilter,
    from_: From = None,
    to: To = None,
) -> Trends:
    """MQLs, SLA compliance and p50 speed-to-lead per UTC day (the last 14 days by default, at most 366)."""
    only = callers_filter(principal, asked)
    if to is not None:
        end = to
    elif from_ is not None:
        end = from_ + timedelta(days=DEFAULT_DAYS - 1)
    else:
        end = kpi_day(now)
    start = from_ or end - timedelta(days=DEFAULT_DAYS - 1)
    if end < start or (end - start).days >= MAX_DAYS:
        raise Unprocessable(f"from must be on or before to, and the range at most {MAX_DAYS} days")
    totals: defaultdict[str, KpiTotals] = defaultdict(KpiTotals)
    for counted in await counter_sums(session, start=start, end=end, only=only, group_by="day", kpis=TREND_KPIS):
        add_to_totals(totals[str(counted.key)], counted)
    speed: defaultdict[str, dict[int, int]] = defaultdict(dict)
    measures = DurationBucket.measure == SPEED_TO_LEAD
    for bucket in await bucket_sums(session, start=start, end=end, only=only, measures=measures, group_by="day"):
        speed[str(bucket.key)][bucket.bucket] = bucket.count
    days: list[DayTrend] = []
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        counted_on = totals[day.isoformat()]
        days.append(
            DayTrend(
                day=day,
                received=counted_on.received,
                mql=counted_on.mql,
                assigned=counted_on.assigned,
                sla_compliance=sla_compliance(counted_on).overall,
                speed_to_lead_p50_minutes=duration_summary(speed[day.isoformat()]).p50_minutes,
            )
        )
    return Trends(from_=start, to=end, days=days)
