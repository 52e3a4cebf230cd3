"""``baton metrics rebuild`` on the real Kafka and PostgreSQL, while metrics consumes: the read model it swaps in
equals the one metrics made live, repairs one damaged by hand, and counts events that arrive meanwhile once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, select, text, update

from baton.outbox import InboxEntry
from baton_metrics.app import create_app
from baton_metrics.models import DurationBucket, KpiCounter, LeadProgress
from baton_metrics.rebuild import REBUILD_SCHEMA, rebuild_read_model
from baton_metrics.settings import MetricsSettings
from tests.conftest import KAFKA_BOOTSTRAP
from tests.unit.test_metrics_read_model import NOW
from tests.unit.test_metrics_rebuild import (
    LiveMetrics,
    check_events_arriving_during_the_rebuild_are_counted_once,
    delivered_twice,
    distinct_events,
    per_topic,
    read_model_rows,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def live(
    tmp_path: Path, unique_name: str, fresh_database: Callable[[str], Awaitable[str]]
) -> AsyncIterator[LiveMetrics]:
    """metrics consuming its own topics on Kafka into its own PostgreSQL database."""
    settings = MetricsSettings(
        data_dir=tmp_path,
        database_url=await fresh_database("metrics"),
        bus="kafka",
        kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
        kafka_topic_prefix=f"{unique_name}.",
        kafka_replication_factor=1,
    )
    app = create_app(settings, clock=lambda: NOW)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics") as client,
    ):
        runtime = app.state.runtime
        yield LiveMetrics(settings, client, runtime.engine, runtime.bus, [])


async def test_rebuild_on_kafka_and_postgresql_equals_live_and_repairs_rows_damaged_by_hand(live: LiveMetrics) -> None:
    records = delivered_twice()
    await live.publish(records)
    await live.applied_everything()
    rows_before, reports_before = await read_model_rows(live.engine), await live.reports()
    async with live.engine.begin() as conn:
        await conn.execute(delete(KpiCounter).where(KpiCounter.kpi.in_(["won", "received"])))
        await conn.execute(update(DurationBucket).values(count=DurationBucket.count * 2))
        await conn.execute(delete(LeadProgress).where(LeadProgress.lead_id == "l2"))
        await conn.execute(delete(InboxEntry).where(InboxEntry.event_id.in_(select(InboxEntry.event_id).limit(5))))
    damaged = await live.reports()
    assert damaged["kpis"]["totals"]["won"] == 0 and damaged != reports_before

    report = await rebuild_read_model(live.settings)

    assert await read_model_rows(live.engine) == rows_before
    assert await live.reports() == reports_before
    assert reports_before["kpis"]["totals"]["won"] == 1
    assert report.records == per_topic(records)
    assert report.events == distinct_events(records)
    async with live.engine.connect() as conn:
        leftover = await conn.execute(
            text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :name"), {"name": REBUILD_SCHEMA}
        )
        assert leftover.scalar_one() == 0


async def test_events_arriving_on_kafka_during_the_rebuild_are_counted_once(
    live: LiveMetrics, tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]
) -> None:
    await check_events_arriving_during_the_rebuild_are_counted_once(
        live, tmp_path / "control", control_url=await fresh_database("control")
    )
