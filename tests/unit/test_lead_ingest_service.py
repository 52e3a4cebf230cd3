"""Storing a group of intake requests in one transaction, on SQLite migrated like the service's own database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db import create_engine, create_sessionmaker, migrate
from baton.outbox import SOURCE_KEY, OutboxEntry
from baton_lead_ingest.domain import request_fingerprint
from baton_lead_ingest.models import IdempotentAnswer, Lead
from baton_lead_ingest.schemas import LeadIn
from baton_lead_ingest.service import Answer, IdempotencyKey, IdempotencyKeyReused, Intake, commit_intakes

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/ingest.db")
    await migrate(engine, "baton_lead_ingest:migrations")
    yield create_sessionmaker(engine, **{SOURCE_KEY: "/baton/lead-ingest"})
    await engine.dispose()


def post(email: str, *, key: str | None = None, caller: str = "crm-sync", **fields: str) -> Intake:
    lead = LeadIn(email=email, **fields)
    idempotency = None
    if key is not None:
        request_hash = request_fingerprint("/leads", lead.model_dump(mode="json"))
        idempotency = IdempotencyKey(caller=caller, key=key, request_hash=request_hash)
    return Intake(leads=[lead], received_at=NOW, batch=False, key=idempotency)


def accepted(result: Answer | IdempotencyKeyReused) -> dict[str, object]:
    assert isinstance(result, Answer)
    assert result.status == 202
    body: dict[str, object] = json.loads(result.body)
    return body


async def stored(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, list[str], int]:
    """How many leads, the outbox's event types in order, and how many answers to keys are held."""
    async with sessions() as session:
        leads = await session.scalar(select(func.count()).select_from(Lead))
        types = list(await session.scalars(select(OutboxEntry.type).order_by(OutboxEntry.id)))
        answers = await session.scalar(select(func.count()).select_from(IdempotentAnswer))
    return int(leads or 0), types, int(answers or 0)


async def test_two_posts_of_a_new_person_in_one_group_make_one_lead_and_one_merge(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first, second = await commit_intakes(
        sessions, [post("jane@example.com", title="CMO"), post("JANE@example.com", title="CEO")]
    )

    assert accepted(first)["duplicate"] is False
    assert accepted(second) == {**accepted(first), "duplicate": True}
    assert await stored(sessions) == (1, ["baton.lead.received.v1", "baton.lead.updated.v1"], 0)
    async with sessions() as session:
        assert await session.scalar(select(Lead.title)) == "CEO"


async def test_the_same_key_twice_in_one_group_is_stored_once_and_answered_alike(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first, again = await commit_intakes(
        sessions, [post("jane@example.com", key="k"), post("jane@example.com", key="k")]
    )

    assert again == first
    assert await stored(sessions) == (1, ["baton.lead.received.v1"], 1)


async def test_the_same_key_with_another_body_in_one_group_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first, refused, other_caller = await commit_intakes(
        sessions,
        [
            post("jane@example.com", key="k"),
            post("ben@example.com", key="k"),
            post("ben@example.com", key="k", caller="web-forms"),
        ],
    )

    assert accepted(first)["duplicate"] is False
    assert isinstance(refused, IdempotencyKeyReused)
    assert accepted(other_caller)["duplicate"] is False
    assert await stored(sessions) == (2, ["baton.lead.received.v1", "baton.lead.received.v1"], 2)


async def test_a_group_replays_a_key_answered_earlier_and_stores_the_rest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    [earlier] = await commit_intakes(sessions, [post("jane@example.com", key="k")])

    replayed, ben = await commit_intakes(sessions, [post("jane@example.com", key="k"), post("ben@example.com")])

    assert replayed == earlier
    assert accepted(ben)["duplicate"] is False
    assert await stored(sessions) == (2, ["baton.lead.received.v1", "baton.lead.received.v1"], 1)
