"""handoff forgets an erased lead: anonymous assignments stay, its open one closes, and it is never routed again.

The helpers here also drive handoff's erasure on PostgreSQL in tests/integration/test_erasure_postgresql.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import func, select

from baton.bus import Record
from baton.consumer import EventConsumer
from baton.events import CloudEvent, LeadErased, LeadQualified, LeadStatusChanged, new_id
from baton_handoff.models import Assignment, ErasedLead
from baton_handoff.settings import HandoffSettings
from baton_handoff.webhooks import WebhookDelivery
from tests.unit.personal_data import ADA, GRACE, Person, where_found
from tests.unit.test_handoff_api import (
    ANA,
    NOW,
    Handoff,
    open_counts,
    written_events,
)
from tests.unit.test_handoff_api import settings as settings  # noqa: F401 (a fixture)
from tests.unit.test_handoff_webhooks import SteppingClock, apply, create_webhook, handoff_at_rest, incoming

# Lead ids are opaque: they name nobody, and stay after an erasure.
GRACE_ID, ADA_ID, NOBODY_ID = (f"0b5e2c7d-41a3-4f0e-9c6d-00000000000{n}" for n in range(3))
# A rule that fails on Grace's title, so that her routing decision quotes it.
DIRECTORS = {
    "name": "directors",
    "priority": 1,
    "conditions": [{"field": "title", "op": "contains", "value": "director"}],
    "team": "emea",
    "method": "round_robin",
    "sla": {"accept_within": "P30D", "touch_within": "P60D"},
}
# A receiver nobody listens on: the tests send nothing, but a team's webhook queues deliveries.
NOWHERE = "http://127.0.0.1:9/hooks"


def qualified(person: Person, lead_id: str) -> LeadQualified:
    """The lead.qualified scoring publishes for ``person``: everything routing may need, personal data included."""
    return LeadQualified.model_validate(
        {
            "lead_id": lead_id,
            "score": 72,
            "fit_grade": "A",
            "reason": "threshold",
            "lead": {
                "email": person.email,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "company": "Fleet Systems",
                "title": person.title,
                "phone": person.phone,
                "country": "DE",
                "company_size": 2_500,
                "industry": "Software",
                "source": "webinar",
                "campaign": "spring-launch",
            },
        }
    )


async def erase(handoff: Handoff, *lead_ids: str, at: datetime = NOW) -> None:
    """Applies lead.erased events one after another in one transaction, as the consumer applies a batch."""
    await handoff.consume(*(LeadErased(lead_id=lead_id) for lead_id in lead_ids), source="/baton/lead-ingest", at=at)


async def rows_of(handoff: Handoff, lead_id: str) -> list[tuple[str | None, str, str | None]]:
    """(rep, status, reason) of each of a lead's assignments, oldest first."""
    async with handoff.runtime.sessions() as session:
        rows = await session.execute(
            select(Assignment.rep_id, Assignment.status, Assignment.reason)
            .where(Assignment.lead_id == lead_id)
            .order_by(Assignment.seq)
        )
        return [(rep_id, status, reason) for rep_id, status, reason in rows]


async def tombstones(handoff: Handoff) -> list[str]:
    async with handoff.runtime.sessions() as session:
        return list(await session.scalars(select(ErasedLead.lead_id).order_by(ErasedLead.lead_id)))


async def deliveries_of(handoff: Handoff, lead_id: str) -> int:
    async with handoff.runtime.sessions() as session:
        return await session.scalar(select(func.count()).where(WebhookDelivery.lead_id == lead_id)) or 0


async def report(handoff: Handoff, assignment_id: str, **body: Any) -> None:
    answer = await handoff.report(assignment_id, body)
    assert answer.status_code == 200, answer.text


async def grace_lost_once_then_holds_the_reps_only_place(handoff: Handoff) -> str:
    """Grace is assigned, lost (a rep's note naming her) and qualifies again; Ada waits in the queue behind her.

    Returns:
        The id of Grace's open assignment.
    """
    await handoff.add_reps({**ANA, "capacity": 1})
    created = await handoff.client.post("/v1/routing-rules", json=DIRECTORS, headers=handoff.admin)
    assert created.status_code == 201, created.text
    await handoff.route(qualified(GRACE, GRACE_ID))
    [first] = await handoff.assignments()
    note = f"{GRACE.first_name} {GRACE.last_name} ({GRACE.phone}) took a job elsewhere"
    await report(handoff, first["assignment_id"], type="accepted")
    await report(handoff, first["assignment_id"], type="lost", reason=note)
    lost = LeadStatusChanged(
        lead_id=GRACE_ID,
        assignment_id=first["assignment_id"],
        rep_id="rep-ana",
        team="emea",
        status="lost",
        reason=note,
        occurred_at=NOW,
    )
    await apply(handoff, incoming(lost, NOW))  # the team's webhook queues the report
    await handoff.route(qualified(GRACE, GRACE_ID), qualified(ADA, ADA_ID))
    [open_one] = await handoff.assignments(status="assigned")
    assert open_one["lead_id"] == GRACE_ID
    return str(open_one["assignment_id"])


@asynccontextmanager
async def handoff_with_webhook(settings: HandoffSettings) -> AsyncIterator[Handoff]:
    """handoff at rest (nothing publishes or consumes behind the test) whose emea team has a webhook."""
    clock = SteppingClock()
    clock.move_to(NOW)
    async with handoff_at_rest(settings, clock) as handoff:
        await create_webhook(handoff, NOWHERE)
        yield handoff


@pytest.fixture
async def handoff(settings: HandoffSettings) -> AsyncIterator[Handoff]:
    async with handoff_with_webhook(settings) as service:
        yield service


async def an_erased_lead_leaves_no_personal_data_in_any_table_and_its_open_assignment_closes(
    settings: HandoffSettings,
) -> None:
    """Grace, lost once and assigned again, is erased: see ``grace_lost_once_then_holds_the_reps_only_place``."""
    async with handoff_with_webhook(settings) as handoff:
        open_id = await grace_lost_once_then_holds_the_reps_only_place(handoff)
        before = {table for table, _, _ in await where_found(handoff.runtime.engine, GRACE.values)}

        await erase(handoff, GRACE_ID)

        left = await where_found(handoff.runtime.engine, GRACE.values)
        grace = await rows_of(handoff, GRACE_ID)
        ada = await rows_of(handoff, ADA_ID)
        kept, counted = await open_counts(handoff)
        [shown] = [a for a in await handoff.assignments() if a["assignment_id"] == open_id]
        decision = await handoff.client.get(f"/v1/assignments/{open_id}/decision", headers=handoff.admin)
        ada_left = {table for table, _, _ in await where_found(handoff.runtime.engine, ADA.values)}
        delivered = await deliveries_of(handoff, GRACE_ID)

    assert before >= {"assignments", "webhook_deliveries", "outbox"}
    assert left == []
    # The assignments stay, anonymous: the old one without the rep's note, the open one closed as lost.
    assert grace == [("rep-ana", "lost", None), ("rep-ana", "lost", "erased")]
    assert {k: v for k, v in shown["lead"].items() if v is not None} == {
        "country": "DE",
        "company_size": 2_500,
        "industry": "Software",
        "source": "webinar",
        "campaign": "spring-launch",
        "score": 72,
        "fit_grade": "A",
    }
    assert decision.status_code == 200, decision.text
    assert decision.json()["rule"] == "default"
    assert "title contains director fails: title is [erased]" in str(decision.json()["matched"])
    # The capacity Grace held went to Ada, who waited in the queue; Ada keeps her details.
    assert ada == [("rep-ana", "assigned", None)]
    assert kept == counted == {"rep-ana": 1}
    assert "assignments" in ada_left
    assert delivered == 1
    closed = [
        LeadStatusChanged.model_validate(event.data)
        for event in await written_events(settings, LeadStatusChanged.event_type)
        if event.data["assignment_id"] == open_id
    ]
    assert [(change.status, change.reason, change.rep_id, change.source) for change in closed] == [
        ("lost", "erased", "rep-ana", "webinar")
    ]


async def test_an_erased_lead_leaves_no_personal_data_in_any_table_and_its_open_assignment_closes(
    settings: HandoffSettings,
) -> None:
    await an_erased_lead_leaves_no_personal_data_in_any_table_and_its_open_assignment_closes(settings)


async def test_an_erased_leads_queued_assignment_closes_and_frees_no_capacity(handoff: Handoff) -> None:
    await handoff.add_reps({**ANA, "capacity": 1})
    await handoff.route(qualified(ADA, ADA_ID), qualified(GRACE, GRACE_ID))

    await erase(handoff, GRACE_ID)

    assert await rows_of(handoff, GRACE_ID) == [(None, "lost", "erased")]
    assert await rows_of(handoff, ADA_ID) == [("rep-ana", "assigned", None)]
    assert await open_counts(handoff) == ({"rep-ana": 1}, {"rep-ana": 1})
    assert await where_found(handoff.runtime.engine, GRACE.values) == []


async def test_a_lead_qualified_after_its_erasure_is_not_routed(
    handoff: Handoff, caplog: pytest.LogCaptureFixture
) -> None:
    await handoff.add_reps(ANA)
    await erase(handoff, GRACE_ID)

    with caplog.at_level("INFO", logger="baton_handoff.consumers"):
        await handoff.route(qualified(GRACE, GRACE_ID), qualified(ADA, ADA_ID))

    assert await rows_of(handoff, GRACE_ID) == []
    assert await rows_of(handoff, ADA_ID) == [("rep-ana", "assigned", None)]
    assert await where_found(handoff.runtime.engine, GRACE.values) == []
    [skipped] = [record for record in caplog.records if "erased lead not routed" in record.getMessage()]
    assert skipped.levelname == "INFO"
    assert getattr(skipped, "lead_id", None) == GRACE_ID
    assert not any(value in str(vars(skipped)) for value in GRACE.values)


async def test_an_erasure_and_a_qualification_in_one_batch_leave_the_lead_unrouted(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    erased = LeadErased(lead_id=GRACE_ID)

    await handoff.consume(qualified(ADA, ADA_ID), erased, qualified(GRACE, GRACE_ID), source="/test", at=NOW)

    assert await rows_of(handoff, GRACE_ID) == []
    assert await rows_of(handoff, ADA_ID) == [("rep-ana", "assigned", None)]


async def test_erasing_twice_or_erasing_a_lead_handoff_never_saw_is_harmless(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified(GRACE, GRACE_ID), qualified(ADA, ADA_ID))

    await erase(handoff, GRACE_ID, NOBODY_ID)
    await erase(handoff, GRACE_ID)

    assert await rows_of(handoff, GRACE_ID) == [("rep-ana", "lost", "erased")]
    assert await rows_of(handoff, ADA_ID) == [("rep-ana", "assigned", None)]
    assert await tombstones(handoff) == sorted([GRACE_ID, NOBODY_ID])
    assert await open_counts(handoff) == ({"rep-ana": 1}, {"rep-ana": 1})
    assert await where_found(handoff.runtime.engine, GRACE.values) == []


async def erased_lookups(handoff: Handoff, leads: Sequence[LeadQualified]) -> int:
    """How many statements handoff's consumer sends to the erased leads' table as it routes a batch of MQLs."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if ErasedLead.__tablename__ in statement:
            sent.append(statement)

    runtime = handoff.runtime
    consumer = EventConsumer(
        group="handoff", handlers=runtime.spec.consumers["handoff"], bus=runtime.bus, sessions=runtime.sessions
    )
    sqlalchemy_event.listen(handoff.runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        await consumer.on_batch([Record.from_event(CloudEvent.wrap(lead, source="/baton/scoring")) for lead in leads])
    finally:
        sqlalchemy_event.remove(handoff.runtime.engine.sync_engine, "before_cursor_execute", count)
    return len(sent)


async def test_routing_a_batch_asks_for_erased_leads_once(handoff: Handoff) -> None:
    await handoff.add_reps({**ANA, "capacity": 1000})
    await erase(handoff, GRACE_ID)

    assert await erased_lookups(handoff, [qualified(ADA, new_id()) for _ in range(3)]) == 1
    assert await erased_lookups(handoff, [qualified(ADA, new_id()) for _ in range(40)]) == 1
    assert await erased_lookups(handoff, [qualified(ADA, new_id()), qualified(GRACE, GRACE_ID)]) == 1
    assert await rows_of(handoff, GRACE_ID) == []
