"""scoring keeps each account's engagement as a running sum of its people's contributions: scoring a lead reads
its account's row, never every person of the account, and the row always equals what its people's own rows
say, through new people, activities, changed e-mail domains, erasures and model changes."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baton.consumer import EventConsumer
from baton.events import LeadErased, LeadUpdated
from baton_scoring.models import Account, LeadScore
from tests.unit.test_scoring_consumers import RECEIVED, account_line, activity, lead, received, records
from tests.unit.test_scoring_consumers import engine as engine  # noqa: F401 (a fixture)
from tests.unit.test_scoring_consumers import scoring as scoring  # noqa: F401 (a fixture)
from tests.unit.test_scoring_consumers import sessions as sessions  # noqa: F401 (a fixture)

SECONDS_PER_DAY = 86_400


async def kept_and_recomputed(session: AsyncSession) -> dict[str, tuple[float, float]]:
    """Each account's engagement at its latest contribution: as its row keeps it, and as its people's rows,
    summed one by one, say it is."""
    people: dict[str, list[LeadScore]] = defaultdict(list)
    for person in await session.scalars(select(LeadScore).where(LeadScore.account_domain.is_not(None))):
        assert person.account_domain is not None
        people[person.account_domain].append(person)
    accounts = {row.domain: row for row in await session.scalars(select(Account))}
    compared: dict[str, tuple[float, float]] = {}
    for domain in people.keys() | accounts.keys():
        row = accounts.get(domain)
        assert row is not None, f"{domain} has people but no account"
        assert row.as_of is not None and row.reference_at is not None

        def halved(since: datetime, row: Account = row) -> float:
            assert row.as_of is not None
            return float(0.5 ** ((row.as_of - since).total_seconds() / SECONDS_PER_DAY / row.half_life_days))

        kept = row.weight * halved(row.reference_at)
        recomputed = math.fsum(p.engagement_exact * halved(p.scored_at) for p in people.get(domain, []))
        compared[domain] = (kept, recomputed)
    return compared


def assert_accounts_match_their_people(compared: dict[str, tuple[float, float]]) -> None:
    for domain, (kept, recomputed) in compared.items():
        assert kept == pytest.approx(recomputed, rel=1e-9, abs=1e-9), domain


async def test_an_account_stays_the_sum_of_its_people_through_new_people_activities_moves_and_erasures(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await scoring.on_batch(
        records(
            received("ann", email="ann@acme.example"),
            received("bob", email="bob@acme.example"),
            received("cy", email="cy@globex.example"),
            activity("ann", "webinar_attended", days=1),
            activity("bob", "content_download", days=2),
            activity("cy", "pricing_page_view", days=2),
        )
    )
    await scoring.on_batch(
        records(activity("ann", "webinar_attended", days=10), activity("cy", "email_click", days=11))
    )
    # Cy is forgotten; Bob moves to Globex, taking his engagement with him.
    moved = LeadUpdated(
        lead_id="bob", changed={"email": "bob@globex.example"}, updated_at=RECEIVED + timedelta(days=12)
    )
    await scoring.on_batch(records(LeadErased(lead_id="cy"), moved))

    async with sessions() as session:
        compared = await kept_and_recomputed(session)
    assert_accounts_match_their_people(compared)
    bob = await lead(sessions, "bob")
    assert (bob.account_domain, account_line(bob)) == ("globex.example", round(bob.engagement_exact, 6))
    ann = await lead(sessions, "ann")
    expected_ann = 10 * 0.5 ** (9 / 30) + 10  # her first webinar decayed to day 10, then her second; Bob counts 0 yet
    bob_at_ten = 5 * 0.5 ** (8 / 30)
    assert account_line(ann) == round(expected_ann + bob_at_ten, 6)
    assert compared["acme.example"][1] == pytest.approx(ann.engagement_exact)  # Bob left acme: Ann alone


async def test_scoring_a_lead_of_a_large_account_reads_the_account_not_its_people(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    people = [f"p{n:03}" for n in range(300)]
    await scoring.on_batch(records(*(received(p, email=f"{p}@acme.example") for p in people)))
    await scoring.on_batch(records(*(activity(p, "webinar_attended") for p in people)))
    statements: list[str] = []

    def keep(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", keep)
    try:
        await scoring.on_batch(records(activity("p000", "webinar_attended", days=30)))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", keep)

    assert [s for s in statements if re.search(r"lead_scores\.account_domain (IN|=)", s)] == []
    # p000: 10 halved over 30 days plus 10 now; 299 colleagues with 10 each, halved.
    assert account_line(await lead(sessions, "p000")) == 5 + 10 + 299 * 5
    async with sessions() as session:
        assert_accounts_match_their_people(await kept_and_recomputed(session))
