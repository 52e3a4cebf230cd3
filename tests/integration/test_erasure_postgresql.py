"""Erasure on the real PostgreSQL: handoff closes an erased lead's assignment, frees its rep, keeps nothing personal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from baton.events import new_id
from baton_handoff.settings import HandoffSettings
from tests.unit.personal_data import GRACE, where_found
from tests.unit.test_handoff_api import ANA, LONG_SLA, open_counts
from tests.unit.test_handoff_erasure import (
    an_erased_lead_leaves_no_personal_data_in_any_table_and_its_open_assignment_closes,
    erase,
    handoff_with_webhook,
    qualified,
    rows_of,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path, database_url=await fresh_database("handoff"), **LONG_SLA)


async def test_an_erased_lead_leaves_no_personal_data_and_its_open_assignment_closes_on_postgresql(
    settings: HandoffSettings,
) -> None:
    await an_erased_lead_leaves_no_personal_data_in_any_table_and_its_open_assignment_closes(settings)


async def test_a_lead_erased_while_it_is_routed_ends_with_no_open_assignment_and_nothing_personal(
    settings: HandoffSettings,
) -> None:
    leads = [new_id() for _ in range(10)]
    async with handoff_with_webhook(settings) as handoff:
        await handoff.add_reps({**ANA, "capacity": 100})

        await asyncio.gather(
            *(work for lead_id in leads for work in (handoff.route(qualified(GRACE, lead_id)), erase(handoff, lead_id)))
        )

        statuses = {status for lead_id in leads for _, status, _ in await rows_of(handoff, lead_id)}
        left = await where_found(handoff.runtime.engine, GRACE.values)
        kept, counted = await open_counts(handoff)

    # Each routing either saw its lead's tombstone or made an assignment its erasure then closed.
    assert statuses <= {"lost"}
    assert left == []
    assert kept == counted == {}
