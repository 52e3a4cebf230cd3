"""What metrics' routes share: the caller's view of the counts."""

from __future__ import annotations

from baton.auth import Principal
from baton.errors import Forbidden
from baton_metrics.service import KpiFilter


def callers_filter(
    principal: Principal,
    *,
    source: str | None = None,
    campaign: str | None = None,
    team: str | None = None,
    rep_id: str | None = None,
) -> KpiFilter:
    """The filters asked for, held to the caller: a rep token sees only its own rows, a team-lead token its team's."""
    if principal.rep_id is not None:
        if rep_id is not None and rep_id != principal.rep_id:
            raise Forbidden("a rep token can only read its own metrics")
        rep_id = principal.rep_id
    if principal.team is not None:
        if team is not None and team != principal.team:
            raise Forbidden("a team token can only read its own team's metrics")
        team = principal.team
    return KpiFilter(source=source, campaign=campaign, team=team, rep_id=rep_id)
