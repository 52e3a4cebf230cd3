"""What metrics' routes share: the filter query parameters and the caller's view of the counts."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends

from baton.auth import Principal
from baton.errors import Forbidden
from baton_metrics.service import KpiFilter


async def asked_filter(
    source: str | None = None,
    campaign: str | None = None,
    team: str | None = None,
    rep_id: str | None = None,
) -> KpiFilter:
    """The ``source``, ``campaign``, ``team`` and ``rep_id`` query parameters, as asked (see ``callers_filter``)."""
    return KpiFilter(source=source, campaign=campaign, team=team, rep_id=rep_id)


AskedFilter = Annotated[KpiFilter, Depends(asked_filter)]


def callers_filter(principal: Principal, asked: KpiFilter) -> KpiFilter:
    """The filters asked for, held to the caller: a rep token sees only its own rows, a team-lead token its team's."""
    rep_id, team = asked.rep_id, asked.team
    if principal.rep_id is not None:
        if rep_id is not None and rep_id != principal.rep_id:
            raise Forbidden("a rep token can only read its own metrics")
        rep_id = principal.rep_id
    if principal.team is not None:
        if team is not None and team != principal.team:
            raise Forbidden("a team token can only read its own team's metrics")
        team = principal.team
    return replace(asked, team=team, rep_id=rep_id)
