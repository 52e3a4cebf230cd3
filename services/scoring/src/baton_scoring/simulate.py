"""What-if: how a proposed model would have graded and qualified recent leads, by source and campaign.

Each lead's events are replayed under both models exactly as the consumers apply them: scored at its
``received_at`` with the activities known by then, and again at each later activity's ``occurred_at``. A
lead counts as an MQL under a model if any of those scorings qualifies it (an MQL stays one for the cycle);
its grade is the one at its last event. Both models are replayed, rather than comparing the proposal with the
lead's recorded status, so the difference is the model change alone and not also whichever older version
happened to score the lead. Nothing is written: the caller reads the leads and shows the counts.

Accounts, as the consumers keep them: a lead's account engagement at a moment sums, over the people sharing
its account domain under that model and known by then (received at or before it), each one's engagement as of
their latest event up to that moment, decayed to it — from ``leads`` and from ``colleagues``, people outside
the window who count towards accounts but are not counted themselves. Each account's events are swept once in
time order through the same running sum the consumers keep (``engine.AccountEngagement``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from baton.events import FitGrade
from baton_scoring.engine import (
    AccountEngagement,
    EngagementEvent,
    QualificationReason,
    account_domain,
    account_value,
    engagement_of,
    qualifies,
    score,
)
from baton_scoring.model import GRADES, ScoringModel


@dataclass(frozen=True)
class SimulatedLead:
    """A lead as the simulation sees it: attributes, activities and where it came from."""

    lead_id: str
    attributes: Mapping[str, object]
    activities: Sequence[EngagementEvent]
    received_at: datetime
    source: str | None = None
    campaign: str | None = None


@dataclass(frozen=True)
class LeadReplay:
    """What a model made of one lead: its grade at its last event, and whether and when it became an MQL."""

    grade: FitGrade
    score: int
    mql_at: datetime | None
    reason: QualificationReason | None


@dataclass(frozen=True)
class SimulationCounts:
    """How many leads a proposal changes, and how."""

    leads: int = 0
    grade_changed: int = 0
    grade_up: int = 0
    grade_down: int = 0
    mql_before: int = 0
    mql_after: int = 0
    newly_mql: int = 0
    no_longer_mql: int = 0

    def __add__(self, other: SimulationCounts) -> SimulationCounts:
        return SimulationCounts(
            leads=self.leads + other.leads,
            grade_changed=self.grade_changed + other.grade_changed,
            grade_up=self.grade_up + other.grade_up,
            grade_down=self.grade_down + other.grade_down,
            mql_before=self.mql_before + other.mql_before,
            mql_after=self.mql_after + other.mql_after,
            newly_mql=self.newly_mql + other.newly_mql,
            no_longer_mql=self.no_longer_mql + other.no_longer_mql,
        )


@dataclass(frozen=True)
class SimulationGroup:
    """The counts for one source and campaign."""

    source: str | None
    campaign: str | None
    counts: SimulationCounts


@dataclass(frozen=True)
class Simulation:
    """A proposal's effect: per source and campaign (sorted, no source or campaign first), and in total."""

    groups: tuple[SimulationGroup, ...]
    total: SimulationCounts


def _event_times(lead: SimulatedLead) -> list[datetime]:
    later = {a.occurred_at for a in lead.activities if a.occurred_at > lead.received_at}
    return [lead.received_at, *sorted(later)]


def _known(activities: Iterable[EngagementEvent], at: datetime) -> list[EngagementEvent]:
    return [a for a in activities if a.occurred_at <= at]


def replay(model: ScoringModel, lead: SimulatedLead, *, account: Sequence[float] | None = None) -> LeadReplay:
    """Replays a lead's events under a model; ``account`` is its account's engagement at each of its events (see
    ``account_engagement``), or None for a lead without an account."""
    mql_at: datetime | None = None
    reason: QualificationReason | None = None
    result = None
    for n, at in enumerate(_event_times(lead)):
        engagement = None if account is None else account[n]
        result = score(model, lead.attributes, _known(lead.activities, at), account_engagement=engagement, at=at)
        if mql_at is None:
            reason = qualifies(model, result)
            if reason is not None:
                mql_at = at
    assert result is not None  # there is always the received event
    return LeadReplay(grade=result.grade, score=result.score, mql_at=mql_at, reason=reason)


def account_engagement(model: ScoringModel, people: Sequence[SimulatedLead]) -> list[list[float]]:
    """The engagement of an account of ``people`` at each event of each of them (in ``_event_times`` order).

    Every event of the account is applied in time order, as the consumers apply them: the person's previous
    contribution is taken back and their engagement at the event added. People with events at the same moment
    all count at that moment.
    """
    moments = sorted(
        (at, n, engagement_of(model, _known(person.activities, at), at))
        for n, person in enumerate(people)
        for at in _event_times(person)
    )
    summed = AccountEngagement(model.half_life_days)
    latest: dict[int, tuple[float, datetime]] = {}
    values: list[list[float]] = [[] for _ in people]
    for at, together in groupby(moments, key=lambda moment: moment[0]):
        persons = list(together)
        for _, n, engagement in persons:
            if n in latest:
                summed.add(-latest[n][0], latest[n][1])
            summed.add(engagement, at)
            latest[n] = (engagement, at)
        value = account_value(summed.value_at(at))
        for _, n, _ in persons:
            values[n].append(value)
    return values


def _replay_all(
    model: ScoringModel, leads: Sequence[SimulatedLead], colleagues: Sequence[SimulatedLead]
) -> list[LeadReplay]:
    everyone = [*leads, *colleagues]
    accounts: dict[str, list[int]] = defaultdict(list)
    for n, person in enumerate(everyone):
        domain = account_domain(model, person.attributes)
        if domain is not None:
            accounts[domain].append(n)
    engagement: dict[int, list[float]] = {}
    for members in accounts.values():
        values = account_engagement(model, [everyone[n] for n in members])
        engagement.update(zip(members, values, strict=True))
    return [replay(model, lead, account=engagement.get(n)) for n, lead in enumerate(leads)]


def _difference(before: LeadReplay, after: LeadReplay) -> SimulationCounts:
    was, will = before.mql_at is not None, after.mql_at is not None
    up = GRADES.index(after.grade) < GRADES.index(before.grade)
    down = GRADES.index(after.grade) > GRADES.index(before.grade)
    return SimulationCounts(
        leads=1,
        grade_changed=int(up or down),
        grade_up=int(up),
        grade_down=int(down),
        mql_before=int(was),
        mql_after=int(will),
        newly_mql=int(will and not was),
        no_longer_mql=int(was and not will),
    )


def _group_order(source: str | None, campaign: str | None) -> tuple[bool, str, bool, str]:
    return (source is not None, source or "", campaign is not None, campaign or "")


def simulate(
    current: ScoringModel,
    proposed: ScoringModel,
    leads: Sequence[SimulatedLead],
    *,
    colleagues: Sequence[SimulatedLead] = (),
) -> Simulation:
    """Counts, per source and campaign, the leads whose grade or MQL decision the proposed model would change."""
    before = _replay_all(current, leads, colleagues)
    after = _replay_all(proposed, leads, colleagues)
    groups: dict[tuple[str | None, str | None], SimulationCounts] = {}
    for lead, was, will in zip(leads, before, after, strict=True):
        key = (lead.source, lead.campaign)
        groups[key] = groups.get(key, SimulationCounts()) + _difference(was, will)
    ordered = sorted(groups.items(), key=lambda item: _group_order(*item[0]))
    total = sum((counts for _, counts in ordered), SimulationCounts())
    return Simulation(
        groups=tuple(SimulationGroup(source=s, campaign=c, counts=counts) for (s, c), counts in ordered),
        total=total,
    )
