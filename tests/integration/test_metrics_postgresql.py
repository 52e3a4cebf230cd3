"""metrics on the real PostgreSQL: two consumers applying batches at once count every event exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from baton.bus import Record
from baton.consumer import EventConsumer
from baton.events import LeadActivity, LeadScored
from baton_metrics.app import create_app
from baton_metrics.consumers import HANDLERS
from baton_metrics.settings import MetricsSettings
from tests.unit.test_metrics_read_model import (
    ADS,
    ANA,
    BEN,
    MAY,
    NOW,
    T0,
    WEBINAR,
    _assigned,
    _qualified,
    _received,
    _record,
    _status,
)

pytestmark = pytest.mark.integration

LEADS = 60


def _lead_events(n: int) -> tuple[list[Record], list[Record]]:
    """A lead's ingest-side events and its scoring and handoff events (two topics' worth, read apart)."""
    lead, assignment = f"lead-{n}", f"assignment-{n}"
    origin, rep = (WEBINAR, ANA) if n % 2 else (ADS, BEN)
    at = T0 + timedelta(seconds=n)
    ingested = [_received(lead, origin, at)]
    downstream = [
        _record(
            LeadScored(lead_id=lead, score=60, fit_grade="A", engagement=0, breakdown=[], model_version=1),
            at + timedelta(seconds=1),
        ),
        _qualified(lead, origin, at + timedelta(seconds=2)),
        _assigned(lead, assignment, rep, origin, at + timedelta(seconds=3), accept_within=600),
        _status(lead, assignment, rep, origin, "accepted", at + timedelta(seconds=60)),
        _status(lead, assignment, rep, origin, "contacted", at + timedelta(seconds=120)),
    ]
    return ingested, downstream


async def _in_batches(consumer: EventConsumer, records: Sequence[Record], size: int) -> None:
    for start in range(0, len(records), size):
        await consumer.on_batch(records[start : start + size])


async def test_two_consumers_applying_overlapping_batches_at_once_count_every_event_exactly_once(
    tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]
) -> None:
    settings = MetricsSettings(data_dir=tmp_path, database_url=await fresh_database("metrics"))
    app = create_app(settings, clock=lambda: NOW)
    ingested: list[Record] = []
    downstream: list[Record] = []
    for n in range(LEADS):
        lead_ingested, lead_downstream = _lead_events(n)
        ingested += lead_ingested
        downstream += lead_downstream
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics") as client,
    ):
        runtime = app.state.runtime

        def consumer() -> EventConsumer:
            return EventConsumer(group="metrics", handlers=HANDLERS, bus=runtime.bus, sessions=runtime.sessions)

        scored = downstream[::5]
        # Every lead is known before (an activity), so the two transactions below meet on an existing row.
        activities = [
            _record(LeadActivity(lead_id=f"lead-{n}", activity_type="visit", occurred_at=T0), T0) for n in range(LEADS)
        ]
        await _in_batches(consumer(), activities, 30)
        # One replica reads the ingest topic while another reads scoring's, a lead at a time in step, so each
        # lead's first pipeline step is started and stopped by two transactions at once.
        await asyncio.gather(_in_batches(consumer(), ingested, 1), _in_batches(consumer(), scored, 1))
        # Then handoff's topic is read while a third replica redelivers everything in other batches.
        await asyncio.gather(
            _in_batches(consumer(), downstream, 25),
            _in_batches(consumer(), [*reversed(ingested), *downstream], 40),
        )
        reader = {"Authorization": "Bearer " + _reader_token(settings)}
        kpis = (await client.get("/v1/kpis", params=MAY, headers=reader)).json()
        pipeline = (await client.get("/v1/pipeline", params=MAY, headers=reader)).json()
        board = (await client.get("/v1/sla/live", headers=reader)).json()

    totals = kpis["totals"]
    assert {k: totals[k] for k in ("received", "mql", "assigned", "accepted", "contacted")} == dict.fromkeys(
        ("received", "mql", "assigned", "accepted", "contacted"), LEADS
    )
    assert (totals["accept_sla_met"], totals["touch_sla_met"]) == (LEADS, LEADS)
    assert kpis["speed_to_lead"]["count"] == kpis["time_to_accept"]["count"] == LEADS
    assert {step["step"]: step["count"] for step in pipeline["steps"]} == dict.fromkeys(
        ("received_to_scored", "scored_to_qualified", "qualified_to_assigned"), LEADS
    )
    assert board["open_assignments"] == 0


def _reader_token(settings: MetricsSettings) -> str:
    from baton.auth import issue_token

    return issue_token(settings.signing_secret(), scopes=["metrics:read"])
