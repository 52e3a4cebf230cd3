"""GET /v1/kpis, /v1/funnel and /v1/pipeline."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from baton.web import MetricsReaderDep, SessionDep
from baton_metrics.api.deps import AskedFilter, callers_filter
from baton_metrics.domain import add_to_totals, funnel_stages
from baton_metrics.schemas import FunnelReport, GroupBy, KpiReport, KpiTotals, PipelineReport
from baton_metrics.service import counter_sums, kpi_report_between, pipeline_report

router = APIRouter(prefix="/v1", tags=["kpis"])

From = Annotated[date | None, Query(alias="from", description="First UTC day counted (inclusive).")]
To = Annotated[date | None, Query(description="Last UTC day counted (inclusive).")]


@router.get("/kpis", response_model_by_alias=True)
async def get_kpis(
    session: SessionDep,
    principal: MetricsReaderDep,
    asked: AskedFilter,
    from_: From = None,
    to: To = None,
    group_by: GroupBy | None = None,
) -> KpiReport:
    """KPI totals, conversion rates, SLA compliance, speed-to-lead, costs and targets between two UTC days."""
    only = callers_filter(principal, asked)
    return await kpi_report_between(session, start=from_, end=to, group_by=group_by, only=only)


@router.get("/funnel", response_model_by_alias=True)
async def get_funnel(
    session: SessionDep,
    principal: MetricsReaderDep,
    asked: AskedFilter,
    from_: From = None,
    to: To = None,
) -> FunnelReport:
    """The funnel from received to won between two UTC days, with rejections, recycles and losses."""
    only = callers_filter(principal, asked)
    totals = KpiTotals()
    for counted in await counter_sums(session, start=from_, end=to, only=only):
        add_to_totals(totals, counted)
    return FunnelReport(
        from_=from_,
        to=to,
        stages=funnel_stages(totals),
        rejected=totals.rejected,
        rejected_by_reason=totals.rejected_by_reason,
        recycled=totals.recycled,
        lost=totals.lost,
    )


@router.get("/pipeline", response_model_by_alias=True)
async def get_pipeline(session: SessionDep, _: MetricsReaderDep, from_: From = None, to: To = None) -> PipelineReport:
    """Baton's own clock: p50 and p99 of received → scored → qualified → assigned between two UTC days."""
    return await pipeline_report(session, start=from_, end=to)
