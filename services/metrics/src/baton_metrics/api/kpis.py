"""GET /v1/kpis."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from baton.web import MetricsReaderDep, SessionDep
from baton_metrics.schemas import GroupBy, KpiReport
from baton_metrics.service import kpi_report_between

router = APIRouter(prefix="/v1", tags=["kpis"])


@router.get("/kpis", response_model_by_alias=True)
async def get_kpis(
    session: SessionDep,
    _: MetricsReaderDep,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    group_by: GroupBy | None = None,
) -> KpiReport:
    """KPI totals and conversion rates between two UTC days (inclusive), overall and per group."""
    return await kpi_report_between(session, start=from_, end=to, group_by=group_by)
