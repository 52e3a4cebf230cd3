"""What a batch of events changes in the read model, worked out without I/O from the state it starts from.

The service loads, once per batch, the open assignments and the lead progress the batch's events
name, applies the events in order with ``ReadModelBatch.apply``, and writes what it changed: counts,
durations, assignment clocks opened and closed, lead progress, journey steps and erasures.

A lead's handoff events arrive in order (one topic, keyed by lead), so an assignment's clock is
always opened before its status changes and breaches close it. Across topics there is no order,
which is why each pipeline step is measured when the later of its two ends is seen, whichever it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton.consumer import Incoming
from baton.events import (
    EventData,
    LeadActivity,
    LeadAssigned,
    LeadErased,
    LeadQualified,
    LeadReceived,
    LeadRecycled,
    LeadScored,
    LeadStatusChanged,
    LeadUpdated,
    SlaBreached,
)
from baton_metrics.domain import (
    PIPELINE,
    SPEED_TO_LEAD,
    TIME_TO_ACCEPT,
    UNKNOWN,
    DurationCell,
    KpiIncrement,
    count_assigned,
    count_qualified,
    count_received,
    count_status_change,
    kpi_cell,
    rejection_reason_kpi,
    sample,
    sla_met,
)
from baton_metrics.schemas import SlaName

CLOSING_STATUSES = frozenset({"rejected", "lost", "qualified", "won"})
"""Statuses after which an assignment has no SLA left to run (``contacted`` closes it too, by meeting the last)."""


@dataclass
class OpenAssignment:
    """An assignment whose accept or touch SLA is still running."""

    assignment_id: str
    lead_id: str
    rep_id: str
    team: str
    source: str
    campaign: str
    assigned_at: datetime
    accept_due_at: datetime
    touch_due_at: datetime
    accepted_at: datetime | None = None

    def running_sla(self) -> tuple[SlaName, datetime]:
        """The SLA still running (accept until the rep accepts, then touch) and its deadline."""
        return ("accept", self.accept_due_at) if self.accepted_at is None else ("touch", self.touch_due_at)


@dataclass
class LeadPath:
    """When a lead first passed each pipeline step, and the source, campaign, team and rep it has."""

    lead_id: str
    source: str = UNKNOWN
    campaign: str = UNKNOWN
    team: str = UNKNOWN
    rep_id: str = UNKNOWN
    received_at: datetime | None = None
    first_scored_at: datetime | None = None
    last_scored_at: datetime | None = None
    qualified_at: datetime | None = None
    assigned_at: datetime | None = None
    erased: bool = False


@dataclass(frozen=True)
class JourneyEntry:
    """One event of a lead's journey and its non-personal facts."""

    lead_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    facts: dict[str, Any]
    rep_id: str | None = None
    team: str | None = None


def _iso(at: datetime) -> str:
    return at.isoformat()


@dataclass
class ReadModelBatch:
    """The read model's state for one batch's leads and assignments, and what applying the batch changed."""

    assignments: dict[str, OpenAssignment] = field(default_factory=dict)
    leads: dict[str, LeadPath] = field(default_factory=dict)
    counts: list[KpiIncrement] = field(default_factory=list)
    durations: list[DurationCell] = field(default_factory=list)
    journey: list[JourneyEntry] = field(default_factory=list)
    opened: set[str] = field(default_factory=set)
    """Assignments whose clock this batch opened or changed (to write)."""
    closed: set[str] = field(default_factory=set)
    """Assignments whose clocks this batch stopped (to delete)."""
    changed_leads: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)

    def apply(self, event: Incoming[EventData]) -> None:
        """Applies one event: what it counts, measures, opens, closes and adds to its lead's journey."""
        data = event.data
        if isinstance(data, LeadReceived):
            self._received(event, data)
        elif isinstance(data, LeadScored):
            self._scored(event, data)
        elif isinstance(data, LeadQualified):
            self._qualified(event, data)
        elif isinstance(data, LeadAssigned):
            self._assigned(event, data)
        elif isinstance(data, LeadStatusChanged):
            self._status_changed(event, data)
        elif isinstance(data, SlaBreached):
            self._breached(event, data)
        elif isinstance(data, LeadRecycled):
            self._recycled(event, data)
        elif isinstance(data, LeadActivity):
            self._step(event, data.occurred_at, {"activity_type": data.activity_type})
        elif isinstance(data, LeadUpdated):
            self._step(event, data.updated_at, {"changed": sorted(data.changed)})
        elif isinstance(data, LeadErased):
            self._erase(data.lead_id)

    def lead(self, lead_id: str) -> LeadPath:
        """The lead's progress, a fresh one if the read model has none yet."""
        path = self.leads.get(lead_id)
        if path is None:
            path = self.leads[lead_id] = LeadPath(lead_id)
        return path

    def _step(
        self,
        event: Incoming[EventData],
        at: datetime,
        facts: dict[str, Any],
        *,
        rep_id: str | None = None,
        team: str | None = None,
    ) -> None:
        if self.lead(event.data.lead_id).erased:
            return  # a late event of an erased lead is counted, never kept
        self.journey.append(
            JourneyEntry(
                lead_id=event.data.lead_id,
                event_id=event.id,
                event_type=event.data.event_type,
                occurred_at=at,
                facts={key: value for key, value in facts.items() if value is not None},
                rep_id=rep_id,
                team=team,
            )
        )

    def _changed(self, lead: LeadPath) -> LeadPath:
        self.changed_leads.add(lead.lead_id)
        return lead

    def _measure_step(self, step: str, started: datetime | None, ended: datetime | None) -> None:
        if started is not None and ended is not None:
            self.durations.append(sample(PIPELINE + step, ended - started, at=ended))

    def _received(self, event: Incoming[EventData], data: LeadReceived) -> None:
        self.counts.append(count_received(data))
        lead = self._changed(self.lead(data.lead_id))
        lead.source = lead.source or data.source or UNKNOWN
        lead.campaign = lead.campaign or data.campaign or UNKNOWN
        if lead.received_at is None:
            lead.received_at = data.received_at
            self._measure_step("received_to_scored", lead.received_at, lead.first_scored_at)
        self._step(event, data.received_at, {"source": data.source, "campaign": data.campaign})

    def _scored(self, event: Incoming[EventData], data: LeadScored) -> None:
        lead = self._changed(self.lead(data.lead_id))
        if lead.first_scored_at is None:
            lead.first_scored_at = event.time
            self._measure_step("received_to_scored", lead.received_at, lead.first_scored_at)
        if lead.last_scored_at is None or event.time >= lead.last_scored_at:
            lead.last_scored_at = event.time
        facts = {
            "score": data.score,
            "fit_grade": data.fit_grade,
            "engagement": data.engagement,
            "model_version": data.model_version,
        }
        self._step(event, event.time, facts)

    def _qualified(self, event: Incoming[EventData], data: LeadQualified) -> None:
        self.counts.append(count_qualified(data, time=event.time))
        lead = self._changed(self.lead(data.lead_id))
        lead.source = data.lead.source or lead.source
        lead.campaign = data.lead.campaign or lead.campaign
        # The score that made it an MQL came just before, on the same topic.
        self._measure_step("scored_to_qualified", lead.last_scored_at, event.time)
        if lead.qualified_at is None:
            lead.qualified_at = event.time
            self._measure_step("qualified_to_assigned", lead.qualified_at, lead.assigned_at)
        facts = {
            "score": data.score,
            "fit_grade": data.fit_grade,
            "reason": data.reason,
            "source": data.lead.source,
            "campaign": data.lead.campaign,
        }
        self._step(event, event.time, facts)

    def _assigned(self, event: Incoming[EventData], data: LeadAssigned) -> None:
        self.counts.append(count_assigned(data, time=event.time))
        lead = self._changed(self.lead(data.lead_id))
        lead.source = data.source or lead.source
        lead.campaign = data.campaign or lead.campaign
        lead.team = data.team or UNKNOWN
        lead.rep_id = data.rep_id
        if lead.assigned_at is None:
            lead.assigned_at = event.time
            self._measure_step("qualified_to_assigned", lead.qualified_at, lead.assigned_at)
        self.assignments[data.assignment_id] = OpenAssignment(
            assignment_id=data.assignment_id,
            lead_id=data.lead_id,
            rep_id=data.rep_id,
            team=data.team or UNKNOWN,
            source=data.source or UNKNOWN,
            campaign=data.campaign or UNKNOWN,
            assigned_at=event.time,
            accept_due_at=data.accept_due_at,
            touch_due_at=data.touch_due_at,
        )
        self.opened.add(data.assignment_id)
        self.closed.discard(data.assignment_id)
        facts = {
            "assignment_id": data.assignment_id,
            "rep_id": data.rep_id,
            "team": data.team,
            "rule": data.rule,
            "attempt": data.attempt,
            "accept_due_at": _iso(data.accept_due_at),
            "touch_due_at": _iso(data.touch_due_at),
        }
        self._step(event, event.time, facts, rep_id=data.rep_id, team=data.team)

    def _close(self, assignment_id: str) -> None:
        if self.assignments.pop(assignment_id, None) is not None:
            self.opened.discard(assignment_id)
            self.closed.add(assignment_id)

    def _status_changed(self, event: Incoming[EventData], data: LeadStatusChanged) -> None:
        self.counts.append(count_status_change(data))
        dimensions = {"source": data.source, "campaign": data.campaign, "team": data.team, "rep_id": data.rep_id}
        at = data.occurred_at
        if data.status == "rejected":
            self.counts.append(KpiIncrement(kpi_cell(rejection_reason_kpi(data.reason), at, **dimensions)))
        clock = self.assignments.get(data.assignment_id)
        if clock is not None and data.status == "accepted" and clock.accepted_at is None:
            clock.accepted_at = at
            self.opened.add(clock.assignment_id)
            outcome = "met" if sla_met(at, clock.accept_due_at) else "breached"
            self.counts.append(KpiIncrement(kpi_cell(f"accept_sla_{outcome}", at, **dimensions)))
            self.durations.append(sample(TIME_TO_ACCEPT, at - clock.assigned_at, at=at, **dimensions))
        elif clock is not None and data.status == "contacted":
            outcome = "met" if sla_met(at, clock.touch_due_at) else "breached"
            self.counts.append(KpiIncrement(kpi_cell(f"touch_sla_{outcome}", at, **dimensions)))
            self.durations.append(sample(SPEED_TO_LEAD, at - clock.assigned_at, at=at, **dimensions))
            self._close(clock.assignment_id)
        elif data.status in CLOSING_STATUSES:
            self._close(data.assignment_id)
        facts = {
            "assignment_id": data.assignment_id,
            "rep_id": data.rep_id,
            "team": data.team,
            "status": data.status,
            "reason": data.reason,
            "amount": str(data.amount) if data.amount is not None else None,
        }
        self._step(event, at, facts, rep_id=data.rep_id, team=data.team)

    def _breached(self, event: Incoming[EventData], data: SlaBreached) -> None:
        clock = self.assignments.get(data.assignment_id)
        lead = self.lead(data.lead_id)
        # The event names only the rep: the rest comes from the assignment, or the lead when it was never seen.
        dimensions = {
            "source": clock.source if clock else lead.source,
            "campaign": clock.campaign if clock else lead.campaign,
            "team": clock.team if clock else None,
            "rep_id": data.rep_id,
        }
        at = data.breached_at
        already_decided = data.sla == "accept" and clock is not None and clock.accepted_at is not None
        if not already_decided:
            self.counts.append(KpiIncrement(kpi_cell(f"{data.sla}_sla_breached", at, **dimensions)))
        self.counts.append(KpiIncrement(kpi_cell(data.action, at, **dimensions)))
        self._close(data.assignment_id)
        facts = {
            "assignment_id": data.assignment_id,
            "rep_id": data.rep_id,
            "sla": data.sla,
            "due_at": _iso(data.due_at),
            "action": data.action,
        }
        self._step(event, at, facts, rep_id=data.rep_id, team=clock.team if clock else None)

    def _recycled(self, event: Incoming[EventData], data: LeadRecycled) -> None:
        lead = self.lead(data.lead_id)
        self.counts.append(
            KpiIncrement(
                kpi_cell(
                    "recycled",
                    event.time,
                    source=lead.source,
                    campaign=lead.campaign,
                    team=lead.team,
                    rep_id=lead.rep_id,
                )
            )
        )
        self._step(event, event.time, {"reason": data.reason}, rep_id=lead.rep_id or None, team=lead.team or None)

    def _erase(self, lead_id: str) -> None:
        lead = self._changed(self.lead(lead_id))
        lead.erased = True
        self.erased.add(lead_id)
        self.journey = [entry for entry in self.journey if entry.lead_id != lead_id]
