"""Looking before and after a model change: simulate a proposal over recent leads, and calibrate the model
against what sales did with its MQLs. Both only read."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from baton.web import AdminDep, NowDep, RuntimeDep, SessionDep
from baton_scoring.api.model import proposed_model
from baton_scoring.calibration import DEFAULT_MIN_DECISIONS, SalesOutcome, suggest_threshold, tally
from baton_scoring.consumers import current_model, engagement_events
from baton_scoring.models import LeadScore, MqlOutcome
from baton_scoring.schemas import CalibrationOut, CalibrationRowOut, SimulationGroupOut, SimulationOut, SuggestionOut
from baton_scoring.settings import ScoringSettings
from baton_scoring.simulate import SimulatedLead, simulate

router = APIRouter(prefix="/v1", tags=["model"])


class SimulationRequest(BaseModel):
    """A proposed model and the window of leads to replay it over."""

    model: dict[str, Any] = Field(description="A complete scoring model, as PUT /v1/model takes it.")
    days: int = Field(30, ge=1, le=365, description="Replay the leads received in the last this many days.")


def _simulated(row: Any) -> SimulatedLead:
    return SimulatedLead(
        lead_id=row.lead_id,
        attributes=row.attributes,
        activities=engagement_events(row.activities),
        received_at=row.received_at,
        source=row.source,
        campaign=row.campaign,
    )


@router.post("/model:simulate")
async def simulate_model(request: SimulationRequest, session: SessionDep, now: NowDep, _: AdminDep) -> SimulationOut:
    """What a proposed model would change for the leads of the last N days, per source and campaign; changes nothing."""
    proposed = proposed_model(request.model)
    since = now - timedelta(days=request.days)
    columns = (
        LeadScore.lead_id,
        LeadScore.attributes,
        LeadScore.activities,
        LeadScore.received_at,
        LeadScore.source,
        LeadScore.campaign,
    )
    async with session.begin():
        version, current = await current_model(session)
        leads = [
            _simulated(row) for row in await session.execute(select(*columns).where(LeadScore.received_at >= since))
        ]
        window = select(LeadScore.account_domain).where(
            LeadScore.received_at >= since, LeadScore.account_domain.is_not(None)
        )
        colleagues = [
            _simulated(row)
            for row in await session.execute(
                select(*columns).where(LeadScore.received_at < since, LeadScore.account_domain.in_(window))
            )
        ]
    result = simulate(current, proposed, leads, colleagues=colleagues)
    return SimulationOut(
        current_version=version,
        days=request.days,
        since=since,
        total=SimulationGroupOut.of(None, None, result.total),
        groups=[SimulationGroupOut.of(g.source, g.campaign, g.counts) for g in result.groups],
    )


@router.get("/calibration")
async def get_calibration(
    session: SessionDep,
    now: NowDep,
    runtime: RuntimeDep,
    _: AdminDep,
    target_accept_rate: Annotated[
        float | None, Query(gt=0, le=1, description="The share of MQLs sales should accept; the setting if absent.")
    ] = None,
    days: Annotated[int, Query(ge=1, le=3650, description="MQLs qualified in the last this many days.")] = 90,
    band_width: Annotated[int, Query(ge=1, le=1000, description="Points per score band.")] = 10,
    min_decisions: Annotated[
        int, Query(ge=1, le=100_000, description="The fewest decisions behind a suggestion.")
    ] = DEFAULT_MIN_DECISIONS,
) -> CalibrationOut:
    """What sales did with the MQLs of each score band and grade, and the threshold that meets an accept-rate target."""
    settings = runtime.settings
    assert isinstance(settings, ScoringSettings)
    target = target_accept_rate if target_accept_rate is not None else settings.calibration_target_accept_rate
    since = now - timedelta(days=days)
    async with session.begin():
        rows = (await session.scalars(select(MqlOutcome).where(MqlOutcome.qualified_at >= since))).all()
    outcomes = [
        SalesOutcome(
            score=row.score,
            grade=row.fit_grade,  # type: ignore[arg-type]
            qualified_by=row.reason,  # type: ignore[arg-type]
            accepted=row.accepted,
            rejected_reason=row.rejected_reason,
            qualified=row.sales_qualified,
            won=row.won,
        )
        for row in rows
    ]
    suggestion = suggest_threshold(outcomes, target, min_decisions=min_decisions)
    return CalibrationOut(
        since=since,
        band_width=band_width,
        rows=[CalibrationRowOut.of(row) for row in tally(outcomes, band_width=band_width)],
        suggestion=SuggestionOut.of(suggestion),
    )
