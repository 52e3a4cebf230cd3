"""scoring's consumer: scores as of the events' own times, publishes lead.scored only on a change and
lead.qualified once per cycle, starts a new cycle on lead.recycled, and records sales' outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.consumer import EventConsumer
from baton.db import create_engine, create_sessionmaker, migrate
from baton.events import (
    CloudEvent,
    EventData,
    LeadActivity,
    LeadErased,
    LeadQualified,
    LeadReceived,
    LeadRecycled,
    LeadScored,
    LeadStatusChanged,
    LeadUpdated,
)
from baton.outbox import SOURCE_KEY, InboxEntry, OutboxEntry
from baton_scoring.consumers import HANDLERS
from baton_scoring.models import LeadScore, MqlOutcome, ScoreHistory

RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'scoring.db'}")
    await migrate(engine, "baton_scoring:migrations")
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine, **{SOURCE_KEY: "/baton/scoring"})


@pytest.fixture
def scoring(sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog) -> EventConsumer:
    # The processing clock is years after the events: scores must not depend on it.
    return EventConsumer(
        group="scoring",
        handlers=HANDLERS,
        bus=embedded_log,
        sessions=sessions,
        retry_pause_seconds=0,
        clock=lambda: datetime(2031, 1, 1, tzinfo=UTC),
    )


def envelope(event: EventData, *, source: str = "/baton/lead-ingest", time: datetime | None = None) -> CloudEvent:
    return CloudEvent.wrap(event, source=source, time=time)


def records(*events: EventData | CloudEvent) -> list[Record]:
    return [Record.from_event(e if isinstance(e, CloudEvent) else envelope(e)) for e in events]


def received(lead_id: str, *, email: str = "pat@acme.example", **changes: Any) -> LeadReceived:
    fields: dict[str, Any] = {
        "lead_id": lead_id,
        "email": email,
        "title": "Marketing Manager",
        "company_size": 300,
        "source": "webinar",
        "campaign": "spring",
        "received_at": RECEIVED,
    }
    return LeadReceived.model_validate(fields | changes)


def activity(lead_id: str, kind: str, *, days: float = 0) -> LeadActivity:
    return LeadActivity(lead_id=lead_id, activity_type=kind, occurred_at=RECEIVED + timedelta(days=days))


def recycled(lead_id: str, *, days: float) -> CloudEvent:
    return envelope(
        LeadRecycled(lead_id=lead_id, reason="not now"), source="/baton/handoff", time=RECEIVED + timedelta(days=days)
    )


def status_changed(lead_id: str, status: str, reason: str | None = None) -> LeadStatusChanged:
    return LeadStatusChanged.model_validate(
        {
            "lead_id": lead_id,
            "assignment_id": "a-1",
            "rep_id": "rep-1",
            "status": status,
            "reason": reason,
            "occurred_at": RECEIVED + timedelta(days=1),
        }
    )


async def published(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> list[EventData]:
    async with sessions() as session:
        payloads = await session.scalars(
            select(OutboxEntry.payload).where(OutboxEntry.aggregate_id == lead_id).order_by(OutboxEntry.id)
        )
        return [CloudEvent.model_validate_json(p).payload() for p in payloads]


def account_line(row: LeadScore) -> float | None:
    """The account engagement a lead's breakdown shows (None: no account)."""
    return next((line["value"] for line in row.breakdown if line["kind"] == "account"), None)


async def lead(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> LeadScore:
    async with sessions() as session:
        row = await session.get(LeadScore, lead_id)
        assert row is not None
        return row


def scores(events: list[EventData]) -> list[int]:
    return [e.score for e in events if isinstance(e, LeadScored)]


def qualifications(events: list[EventData]) -> list[LeadQualified]:
    return [e for e in events if isinstance(e, LeadQualified)]


async def test_the_default_model_scores_a_manager_at_a_mid_market_company_20_and_keeps_it_nurtured(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1")))

    row = await lead(sessions, "l1")
    assert (row.score, row.fit_grade, row.status, row.model_version) == (20, "C", "nurture", 2)
    assert [(line["rule"], line["points"]) for line in row.breakdown] == [
        ("title: manager", 10),
        ("company size: mid-market", 10),
        ("account engagement", 0),
    ]
    assert (row.source, row.campaign, row.account_domain, row.received_at) == (
        "webinar",
        "spring",
        "acme.example",
        RECEIVED,
    )


async def test_an_activity_that_earns_nothing_publishes_no_lead_scored(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1"), activity("l1", "page_view"), activity("l1", "email_click")))

    assert scores(await published(sessions, "l1")) == [20, 23]
    async with sessions() as session:
        history = (await session.scalars(select(ScoreHistory.cause).where(ScoreHistory.lead_id == "l1"))).all()
    assert history == ["received", "activity"]


async def test_the_same_activity_delivered_twice_adds_its_points_once(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    click = records(activity("l1", "webinar_attended"))
    await scoring.on_batch(records(received("l1")))

    await scoring.on_batch(click)
    await scoring.on_batch(click)

    assert (await lead(sessions, "l1")).score == 30
    assert scores(await published(sessions, "l1")) == [20, 30]


async def test_decay_runs_on_the_events_times_so_a_replay_scores_the_same_whatever_the_clock(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog
) -> None:
    events = (received("l1"), activity("l1", "webinar_attended"), activity("l1", "email_click", days=30))
    await scoring.on_batch(records(*events))
    later = EventConsumer(
        group="scoring",
        handlers=HANDLERS,
        bus=embedded_log,
        sessions=sessions,
        retry_pause_seconds=0,
        clock=lambda: datetime(2040, 1, 1, tzinfo=UTC),
    )

    await later.on_batch(records(received("l2"), activity("l2", "webinar_attended")))
    await later.on_batch(records(activity("l2", "email_click", days=30)))

    # The webinar has halved by the click a half-life later: 20 fit + 5 + 3.
    assert (await lead(sessions, "l1")).score == (await lead(sessions, "l2")).score == 28


async def test_a_crossing_delivered_twice_qualifies_the_lead_once(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1"), activity("l1", "webinar_attended")))
    crossing = activity("l1", "webinar_attended")  # 20 + 10 + 10 = 40, the threshold

    await scoring.on_batch(records(crossing))
    await scoring.on_batch(records(LeadActivity.model_validate(crossing.model_dump())))
    await scoring.on_batch(records(activity("l1", "pricing_page_view")))

    events = await published(sessions, "l1")
    [mql] = qualifications(events)
    assert (mql.reason, mql.score, mql.fit_grade) == ("threshold", 40, "C")
    assert (await lead(sessions, "l1")).status == "mql"


async def test_a_recycled_lead_qualifies_again_only_when_it_raises_its_hand_after_coming_back(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1"), activity("l1", "demo_request", days=1)))
    await scoring.on_batch(records(recycled("l1", days=2)))
    recycled_lead = await lead(sessions, "l1")
    assert (recycled_lead.status, recycled_lead.cycle) == ("nurture", 2)

    await scoring.on_batch(records(activity("l1", "email_click", days=3)))
    assert len(qualifications(await published(sessions, "l1"))) == 1

    await scoring.on_batch(records(activity("l1", "demo_request", days=4)))
    assert [q.reason for q in qualifications(await published(sessions, "l1"))] == ["hand-raiser", "hand-raiser"]
    async with sessions() as session:
        cycles = (await session.scalars(select(MqlOutcome.cycle).where(MqlOutcome.lead_id == "l1"))).all()
    assert sorted(cycles) == [1, 2]


async def test_a_recycled_lead_whose_score_stays_high_qualifies_again_only_after_crossing_from_below(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    executive = received("l1", title="CEO", company_size=5_000)  # 45 by fit alone
    await scoring.on_batch(records(executive))
    await scoring.on_batch(records(recycled("l1", days=1)))

    await scoring.on_batch(records(activity("l1", "email_click", days=2)))
    assert len(qualifications(await published(sessions, "l1"))) == 1

    demoted = LeadUpdated(lead_id="l1", changed={"title": "Engineer"}, updated_at=RECEIVED + timedelta(days=3))
    promoted = LeadUpdated(lead_id="l1", changed={"title": "CEO"}, updated_at=RECEIVED + timedelta(days=4))
    await scoring.on_batch(records(demoted))
    await scoring.on_batch(records(promoted))
    assert len(qualifications(await published(sessions, "l1"))) == 2


async def test_colleagues_engagement_adds_up_in_the_account_and_a_rule_can_use_it(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(
        records(
            received("l1", email="ann@acme.example"),
            received("l2", email="bob@acme.example"),
            received("l3", email="cy@gmail.com"),
            activity("l1", "webinar_attended"),
            activity("l2", "content_download"),
            activity("l3", "webinar_attended"),
        )
    )

    assert account_line(await lead(sessions, "l2")) == 15
    assert account_line(await lead(sessions, "l1")) == 10  # as of its own activity, before Bob's download
    assert account_line(await lead(sessions, "l3")) is None  # free mail: no account


async def test_sales_outcomes_of_each_cycle_are_kept_for_calibration(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1", title="CEO", company_size=5_000), received("l2", title="CEO")))
    await scoring.on_batch(
        records(
            status_changed("l1", "accepted"),
            status_changed("l1", "won"),
            status_changed("l2", "rejected", "  wrong region "),
            status_changed("nobody", "accepted"),
        )
    )

    async with sessions() as session:
        outcomes = {
            o.lead_id: (o.score, o.fit_grade, o.reason, o.accepted, o.rejected_reason, o.sales_qualified, o.won)
            for o in await session.scalars(select(MqlOutcome))
        }
    assert outcomes == {
        "l1": (45, "A", "threshold", True, None, True, True),
        "l2": (40, "A", "threshold", False, "wrong region", False, False),
    }


async def test_an_erased_leads_outcome_keeps_its_numbers_but_not_the_reason_sales_wrote(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1", title="CEO", company_size=5_000)))
    await scoring.on_batch(records(status_changed("l1", "rejected", "Pat said call after her surgery")))

    await scoring.on_batch(records(LeadErased(lead_id="l1")))

    async with sessions() as session:
        outcome = await session.scalar(select(MqlOutcome))
    assert outcome is not None
    assert (outcome.score, outcome.accepted, outcome.rejected_reason) == (45, False, "withheld")


async def test_a_hand_raised_after_the_return_but_applied_before_the_recycle_still_qualifies_the_lead_again(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1", title="CEO", company_size=5_000)))

    # leads.ingested and leads.handoff are separate topics: the demo request may be applied first.
    await scoring.on_batch(records(activity("l1", "demo_request", days=3)))
    await scoring.on_batch(records(recycled("l1", days=2)))

    assert [q.reason for q in qualifications(await published(sessions, "l1"))] == ["threshold", "hand-raiser"]
    assert ((await lead(sessions, "l1")).status, (await lead(sessions, "l1")).cycle) == ("mql", 2)


async def test_a_hand_raised_without_new_points_publishes_the_score_that_qualified_the_lead_then_the_mql(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(records(received("l1"), activity("l1", "demo_request")))

    events = await published(sessions, "l1")

    assert [(type(e).__name__, getattr(e, "score", None)) for e in events] == [
        ("LeadScored", 20),
        ("LeadScored", 20),
        ("LeadQualified", 20),
    ]


async def test_a_batch_reads_the_accounts_of_all_its_leads_with_one_query(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    people = [(f"p{n}", f"p{n}@{domain}") for n, domain in enumerate(["a.example", "b.example", "c.example"] * 2)]
    await scoring.on_batch(records(*(received(lead_id, email=email) for lead_id, email in people)))
    account_reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        where = statement.partition("WHERE")[2]
        if statement.lstrip().startswith("SELECT") and "account_domain" in where:
            account_reads.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        await scoring.on_batch(records(*(activity(lead_id, "webinar_attended") for lead_id, _ in people)))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)

    assert len(account_reads) == 1
    accounts = {(await lead(sessions, lead_id)).breakdown[-1]["value"] for lead_id, _ in people}
    assert accounts == {10, 20}  # each the first or the second of its account to attend


async def test_a_crossing_replayed_after_the_inbox_forgot_it_adds_no_points_and_qualifies_nobody_again(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    crossing = records(activity("l1", "webinar_attended"), activity("l1", "webinar_attended", days=0.5))
    await scoring.on_batch(records(received("l1")))
    await scoring.on_batch(crossing)
    async with sessions() as session, session.begin():
        await session.execute(delete(InboxEntry))  # past its retention, then replayed from the log

    await scoring.on_batch(crossing)

    assert (await lead(sessions, "l1")).score == 40
    assert len(qualifications(await published(sessions, "l1"))) == 1
