"""``baton metrics rebuild`` on the embedded log and SQLite, while metrics runs: the read model it swaps in is the
one the live consumer made, row for row, with duplicates on the log counted once and events that arrive during
the rebuild counted once too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.auth import issue_token
from baton.bus import Bus, Record
from baton.bus.embedded import EmbeddedLog
from baton.cli import main
from baton.consumer import EventConsumer
from baton.db import create_engine, create_sessionmaker, migrate
from baton.events import LEADS_HANDOFF, LEADS_INGESTED, LEADS_SCORED, LeadActivity, LeadErased, LeadScored, dlq_topic
from baton.outbox import InboxEntry, decode_record
from baton_metrics.app import SPEC, create_app
from baton_metrics.consumers import HANDLERS
from baton_metrics.models import DurationBucket, JourneyStep, KpiCounter
from baton_metrics.rebuild import GROUP, READ_MODEL, RebuildRefused, RebuildReport, rebuild_read_model
from baton_metrics.settings import MetricsSettings
from tests.e2e.test_walking_skeleton import eventually
from tests.unit.test_metrics_read_model import (
    ADS,
    ANA,
    BEN,
    EXPECTED_TOTALS,
    MAY,
    NOW,
    T0,
    WEBINAR,
    _assigned,
    _qualified,
    _received,
    _record,
    _status,
    scenario,
)

WAIT_SECONDS = 30.0


def lead_events(n: int) -> list[Record]:
    """The n-th extra lead's events across the three topics: received, scored, qualified, assigned, worked."""
    lead, assignment = f"lead-{n}", f"assignment-{n}"
    origin, rep = (WEBINAR, ANA) if n % 2 else (ADS, BEN)
    at = T0 + timedelta(minutes=n)
    records = [
        _received(lead, origin, at),
        _record(
            LeadScored(lead_id=lead, score=50 + n % 7, fit_grade="B", engagement=n, breakdown=[], model_version=1),
            at + timedelta(seconds=1),
        ),
        _qualified(lead, origin, at + timedelta(seconds=2)),
        _assigned(lead, assignment, rep, origin, at + timedelta(seconds=3), accept_within=600),
        _record(LeadActivity(lead_id=lead, activity_type="webinar", occurred_at=at + timedelta(seconds=30)), at),
    ]
    if n % 3:
        records.append(_status(lead, assignment, rep, origin, "accepted", at + timedelta(seconds=60 * (n % 13))))
    if n % 3 == 1:
        records.append(_status(lead, assignment, rep, origin, "contacted", at + timedelta(seconds=900)))
    if n % 5 == 0:
        records.append(_record(LeadErased(lead_id=lead), at + timedelta(hours=1)))
    return records


def many_leads(first: int, count: int) -> list[Record]:
    return [record for n in range(first, first + count) for record in lead_events(n)]


def distinct_events(records: Sequence[Record]) -> int:
    return len({decode_record(record).id for record in records})


def per_topic(records: Sequence[Record]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.topic] = counts.get(record.topic, 0) + 1
    return counts


async def inbox_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(InboxEntry).where(InboxEntry.consumer_group == GROUP)
        return int((await conn.execute(query)).scalar_one())


async def read_model_rows(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table's rows (without surrogate ids) and the group's applied event ids, in a stable order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for table in READ_MODEL:
            columns = [column for column in table.columns if column.autoincrement is not True]
            result = await conn.execute(select(*columns))
            rows[table.name] = sorted((tuple(row) for row in result), key=repr)
        inbox = select(InboxEntry.event_id).where(InboxEntry.consumer_group == GROUP)
        rows["inbox"] = sorted((row[0],) for row in await conn.execute(inbox))
    return rows


async def control_read_model(path: Path, records: Sequence[Record], *, url: str | None = None) -> AsyncEngine:
    """A read model nobody rebuilt: metrics' consumer applying the records, as delivered, to a database of its own."""
    engine = create_engine(url or f"sqlite+aiosqlite:///{path}")
    await migrate(engine, SPEC.migrations)
    # Nothing fails here, so nothing is dead-lettered: the bus is never used.
    unused = EmbeddedLog(path.with_suffix(".unused"))
    consumer = EventConsumer(group=GROUP, handlers=HANDLERS, bus=unused, sessions=create_sessionmaker(engine))
    for start in range(0, len(records), 7):
        await consumer.on_batch(records[start : start + 7])
    return engine


@dataclass
class LiveMetrics:
    """metrics running on the embedded log: its consumer applies what is published, its API reads the result."""

    settings: MetricsSettings
    client: httpx.AsyncClient
    engine: AsyncEngine
    bus: Bus
    published: list[Record]

    async def publish(self, records: Sequence[Record]) -> None:
        await self.bus.publish(records)
        self.published.extend(records)

    async def applied_everything(self) -> None:
        expected = distinct_events(self.published)
        await eventually(
            lambda: self._applied(expected), what=f"metrics to apply {expected} events", within=WAIT_SECONDS
        )

    async def _applied(self, expected: int) -> bool:
        return await inbox_count(self.engine) == expected

    async def reports(self) -> dict[str, Any]:
        """What the API answers, on every view the read model feeds."""
        token = issue_token(self.settings.signing_secret(), scopes=["metrics:read"])
        headers = {"Authorization": f"Bearer {token}"}
        answers: dict[str, Any] = {}
        for name, path, params in (
            ("kpis", "/v1/kpis", MAY),
            ("kpis_by_rep", "/v1/kpis", {**MAY, "group_by": "rep"}),
            ("kpis_by_campaign", "/v1/kpis", {**MAY, "group_by": "campaign"}),
            ("funnel", "/v1/funnel", MAY),
            ("pipeline", "/v1/pipeline", MAY),
            ("sla", "/v1/sla/live", {}),
            ("journey_l1", "/v1/leads/l1/journey", {}),
            ("journey_lead_1", "/v1/leads/lead-1/journey", {}),
        ):
            response = await self.client.get(path, params=params, headers=headers)
            assert response.status_code == 200, response.text
            answers[name] = response.json()
        return answers


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveMetrics]:
    settings = MetricsSettings(data_dir=tmp_path / "data")
    app = create_app(settings, clock=lambda: NOW)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics") as client,
    ):
        runtime = app.state.runtime
        yield LiveMetrics(settings, client, runtime.engine, runtime.bus, [])


def delivered_twice() -> list[Record]:
    """The read-model scenario and forty more leads, then the scenario and ten of the leads again (redelivered)."""
    first = scenario() + many_leads(0, 40)
    return first + first[: len(scenario()) + len(many_leads(0, 10))]


async def test_rebuild_from_the_log_comes_out_identical_to_the_live_read_model(live: LiveMetrics) -> None:
    records = delivered_twice()
    await live.publish(records)
    await live.applied_everything()
    rows_before, reports_before = await read_model_rows(live.engine), await live.reports()

    report = await rebuild_read_model(live.settings)

    assert await read_model_rows(live.engine) == rows_before
    assert await live.reports() == reports_before
    assert report.records == per_topic(records)
    assert report.events == distinct_events(records) == len(rows_before["inbox"])
    assert (report.caught_up, report.not_applied) == (0, 0)
    # Not trivially equal: the scenario's totals, counted once although the log holds them twice.
    totals = reports_before["kpis"]["totals"]
    assert totals["won"] == EXPECTED_TOTALS["won"] and totals["received"] == 4 + 40


async def test_rebuild_restores_a_read_model_damaged_by_hand(live: LiveMetrics, tmp_path: Path) -> None:
    records = delivered_twice()
    await live.publish(records)
    await live.applied_everything()
    rows_before, reports_before = await read_model_rows(live.engine), await live.reports()
    async with live.engine.begin() as conn:
        await conn.execute(delete(KpiCounter).where(KpiCounter.kpi == "won"))
        await conn.execute(update(DurationBucket).values(count=DurationBucket.count + 3))
        await conn.execute(delete(JourneyStep).where(JourneyStep.lead_id == "l1"))
        await conn.execute(delete(InboxEntry).where(InboxEntry.event_id.in_(select(InboxEntry.event_id).limit(5))))
    assert await read_model_rows(live.engine) != rows_before

    await rebuild_read_model(live.settings)

    assert await read_model_rows(live.engine) == rows_before
    assert await live.reports() == reports_before
    control = await control_read_model(tmp_path / "control.db", records)
    try:
        assert await read_model_rows(control) == rows_before
    finally:
        await control.dispose()


class ArrivalsDuringReads:
    """A log whose every read of leads.ingested is followed, before it returns, by events arriving (as producers
    would publish them): the rebuild's first read misses them, and what arrives at the second only live sees."""

    def __init__(self, bus: Bus, arrive: Callable[[int], Awaitable[None]]) -> None:
        self.bus = bus
        self.arrive = arrive
        self.reads = 0

    async def read(self, topic: str) -> list[Record]:
        records = await self.bus.read(topic)
        if topic == LEADS_INGESTED:
            self.reads += 1
            await self.arrive(self.reads)
        return records


async def rebuild_while_events_arrive(
    live: LiveMetrics, log: Bus, first_arrivals: Sequence[Record], second_arrivals: Sequence[Record]
) -> RebuildReport:
    """Rebuilds while ``first_arrivals`` reach the log (and live applies them) after the first read of
    leads.ingested, and ``second_arrivals`` after the second, under the lock."""

    async def arrive(read: int) -> None:
        if read == 1:
            await live.publish(first_arrivals)
            await live.applied_everything()
        elif read == 2:
            await live.publish(second_arrivals)

    # The rebuild reads only; everything else of the log is the real one's.
    return await rebuild_read_model(live.settings, bus=cast(Bus, ArrivalsDuringReads(log, arrive)))


def caught_up_under_the_lock(first_arrivals: Sequence[Record], second_arrivals: Sequence[Record]) -> int:
    """The first read of leads.ingested missed the first arrivals; the locked reads of the later topics saw the
    second arrivals' scoring and handoff events, which live applies (and skips) only after the swap."""
    first, second = per_topic(first_arrivals), per_topic(second_arrivals)
    return first[LEADS_INGESTED] + second[LEADS_SCORED] + second[LEADS_HANDOFF]


async def check_events_arriving_during_the_rebuild_are_counted_once(
    live: LiveMetrics, control_path: Path, *, control_url: str | None = None
) -> None:
    """Leads 100–109 (and a redelivery of earlier events) arrive after the first read and live applies them before
    the lock; leads 200–209 arrive after the second read, under the lock, so live applies them after the swap.
    The read model then equals a control one (at ``control_path``, or ``control_url``) that applied the log once."""
    await live.publish(delivered_twice())
    await live.applied_everything()
    first_arrivals = many_leads(100, 10) + live.published[:5]
    second_arrivals = many_leads(200, 10)

    report = await rebuild_while_events_arrive(live, live.bus, first_arrivals, second_arrivals)
    await live.applied_everything()

    assert report.caught_up == caught_up_under_the_lock(first_arrivals, second_arrivals)
    control = await control_read_model(control_path, live.published, url=control_url)
    try:
        assert await read_model_rows(live.engine) == await read_model_rows(control)
    finally:
        await control.dispose()
    totals = (await live.reports())["kpis"]["totals"]
    assert totals["received"] == 4 + 40 + 10 + 10


async def test_events_arriving_during_the_rebuild_are_counted_once_whether_live_applied_them_first_or_not(
    live: LiveMetrics, tmp_path: Path
) -> None:
    await check_events_arriving_during_the_rebuild_are_counted_once(live, tmp_path / "control.db")


async def test_baton_metrics_rebuild_prints_what_it_replayed_and_exits_0(
    live: LiveMetrics, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    records = delivered_twice()
    await live.publish(records)
    await live.applied_everything()
    rows_before = await read_model_rows(live.engine)
    monkeypatch.setenv("BATON_DATA_DIR", str(live.settings.data_dir))

    # The command runs its own event loop, as it does from a shell: here in a thread beside metrics' loop.
    code = await asyncio.to_thread(main, ["metrics", "rebuild"])

    out = capsys.readouterr().out
    assert code == 0
    for topic, count in per_topic(records).items():
        assert f"replayed {count} event(s) from {topic}" in out
    assert f"{distinct_events(records)} distinct event(s)" in out and "events/s" in out
    assert await read_model_rows(live.engine) == rows_before
    assert not (live.settings.data_dir / "baton_metrics.rebuild.db").exists()


async def test_an_event_that_failed_live_fails_again_and_is_not_parked_a_second_time(live: LiveMetrics) -> None:
    records = scenario()
    undecodable = replace(records[0], value=b'{"lead_id": ')
    await live.publish(records)
    await live.bus.publish([undecodable])
    await live.applied_everything()

    async def parked_once() -> bool:
        return len(await live.bus.read(dlq_topic(LEADS_INGESTED))) == 1

    await eventually(parked_once, what="live to park the undecodable event", within=WAIT_SECONDS)
    rows_before = await read_model_rows(live.engine)

    report = await rebuild_read_model(live.settings)

    assert report.not_applied == 1
    assert report.records[LEADS_INGESTED] == per_topic(records)[LEADS_INGESTED] + 1
    assert await parked_once()
    assert await read_model_rows(live.engine) == rows_before


async def test_a_second_rebuild_while_one_runs_is_refused(live: LiveMetrics) -> None:
    await live.publish(scenario())
    await live.applied_everything()
    refusals: list[str] = []

    async def rebuild_again(read: int) -> None:
        if read == 1:
            with pytest.raises(RebuildRefused) as refused:
                await rebuild_read_model(live.settings)
            refusals.append(str(refused.value))

    report = await rebuild_read_model(live.settings, bus=cast(Bus, ArrivalsDuringReads(live.bus, rebuild_again)))

    assert refusals == ["another rebuild of metrics' read model is running"]
    assert report.events == len(scenario())


async def test_a_rebuild_that_fails_under_the_lock_leaves_the_live_read_model_as_it_was(live: LiveMetrics) -> None:
    await live.publish(delivered_twice())
    await live.applied_everything()
    async with live.engine.begin() as conn:
        await conn.execute(delete(KpiCounter).where(KpiCounter.kpi == "won"))
    damaged = await read_model_rows(live.engine)

    async def fail_under_the_lock(read: int) -> None:
        if read == 2:
            raise ConnectionError("the log went away")

    with pytest.raises(ConnectionError):
        await rebuild_read_model(live.settings, bus=cast(Bus, ArrivalsDuringReads(live.bus, fail_under_the_lock)))

    assert await read_model_rows(live.engine) == damaged
    assert not (live.settings.data_dir / "baton_metrics.rebuild.db").exists()
    await rebuild_read_model(live.settings)
    assert (await live.reports())["kpis"]["totals"]["won"] == 1
