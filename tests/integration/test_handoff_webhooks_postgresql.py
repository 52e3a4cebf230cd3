"""Webhook deliveries on the real PostgreSQL: replicas sending side by side never send one delivery twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from baton_handoff import webhooks
from baton_handoff.settings import HandoffSettings
from tests.unit.test_handoff_api import Handoff
from tests.unit.test_handoff_webhooks import (
    SteppingClock,
    apply,
    assigned,
    create_webhook,
    deliveries,
    handoff_at_rest,
    incoming,
    running_receiver,
)

pytestmark = pytest.mark.integration

DUE = 100


@pytest.fixture
async def settings(tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path, database_url=await fresh_database("handoff"))


async def deliver_until_nothing_is_due(handoff: Handoff, clock: SteppingClock) -> int:
    """Runs one replica's delivery passes until a pass finds nothing due; returns how many it sent."""
    sent = 0
    async with webhooks.delivery_client() as client:
        while claimed := await webhooks.deliver_due(handoff.runtime.sessions, client=client, clock=clock):
            sent += claimed
    return sent


async def test_workers_over_100_due_deliveries_send_each_exactly_once(settings: HandoffSettings) -> None:
    clock = SteppingClock()
    per_pass = webhooks.DELIVERIES_PER_PASS
    # The receiver answers nobody until three first passes are in flight together: two workers that
    # claim at the same moment (each skips the rows the other has locked), and a third that claims
    # while the others' deliveries are being sent (their lease keeps those rows from being due).
    async with (
        running_receiver(hold_until=3 * per_pass) as receiver,
        handoff_at_rest(settings, clock) as first,
        handoff_at_rest(settings, clock) as second,
        handoff_at_rest(settings, clock) as third,
    ):
        await create_webhook(first, receiver.url)
        await apply(first, *(incoming(assigned(), clock.now) for _ in range(DUE)))

        side_by_side = asyncio.gather(
            deliver_until_nothing_is_due(first, clock), deliver_until_nothing_is_due(second, clock)
        )
        await receiver.wait_for(2 * per_pass)
        late = await deliver_until_nothing_is_due(third, clock)
        sent = [*await side_by_side, late]

        rows = await deliveries(first)
    assert len(rows) == DUE
    assert sorted(receiver.ids()) == sorted(row.id for row in rows)
    assert {(row.status, row.attempts) for row in rows} == {("delivered", 1)}
    assert sum(sent) == DUE
    assert min(sent) >= per_pass
