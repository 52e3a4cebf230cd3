"""PUT /v1/targets and PUT /v1/campaigns/{campaign}/cost (admin), and reading them back."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path

from baton.web import AdminDep, MetricsReaderDep, SessionDep
from baton_metrics.domain import Cost
from baton_metrics.schemas import CampaignCostIn, CampaignCostOut, TargetsIn, TargetsOut
from baton_metrics.service import get_targets, set_campaign_cost, set_targets

router = APIRouter(prefix="/v1", tags=["targets"])

CENTS = Decimal("0.01")
Campaign = Annotated[str, Path(min_length=1, max_length=200)]


def _targets_out(targets: object) -> TargetsOut:
    return TargetsOut.model_validate(targets, from_attributes=True)


@router.get("/targets")
async def read_targets(session: SessionDep, _: MetricsReaderDep) -> TargetsOut:
    """The KPI targets in force."""
    return _targets_out(await get_targets(session))


@router.put("/targets")
async def put_targets(body: TargetsIn, session: SessionDep, _: AdminDep) -> TargetsOut:
    """Sets the monthly MQL, SLA compliance (0–1) and speed-to-lead targets; fields left out keep their value."""
    return _targets_out(await set_targets(session, changes=body.model_dump(exclude_unset=True)))


@router.put("/campaigns/{campaign}/cost")
async def put_campaign_cost(
    campaign: Campaign, body: CampaignCostIn, session: SessionDep, _: AdminDep
) -> CampaignCostOut:
    """Sets what a campaign cost in total, for cost per MQL and ROI."""
    cost = Cost(amount=body.amount.quantize(CENTS), currency=body.currency)
    await set_campaign_cost(session, campaign=campaign, cost=cost)
    return CampaignCostOut(campaign=campaign, amount=cost.amount, currency=cost.currency)
