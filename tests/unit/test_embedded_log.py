"""The embedded durable log: order, headers, consumer-group offsets across restarts, redelivery, one replica."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from baton.bus import Record, ReplicaRefused
from baton.bus.embedded import EmbeddedLog, _WakeUp
from tests.unit.conftest import READ_TIMEOUT_SECONDS, run_until

ConsumeRecords = Callable[[EmbeddedLog, str, Sequence[str], int], Awaitable[list[Record]]]
TOPIC = "leads.ingested"


def _records(count: int, *, topic: str = TOPIC) -> list[Record]:
    return [
        Record(
            topic=topic,
            key=f"lead-{n}",
            value=f'{{"n":{n}}}'.encode(),
            headers=(("ce_id", f"event-{n}".encode()), ("x-raw", bytes([0, 255, n]))),
        )
        for n in range(count)
    ]


def _values(records: Sequence[Record]) -> list[bytes]:
    return [record.value for record in records]


async def test_published_records_reach_a_consumer_in_order_with_key_and_headers_intact(
    embedded_log: EmbeddedLog, consume_records: ConsumeRecords
) -> None:
    published = _records(5)
    await embedded_log.publish(published[:2])
    await embedded_log.publish(published[2:])

    received = await consume_records(embedded_log, "scoring", [TOPIC], 5)

    assert [(r.topic, r.key, r.value, r.headers) for r in received] == [
        (r.topic, r.key, r.value, r.headers) for r in published
    ]
    offsets = [r.offset for r in received]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 5


async def test_consumer_gets_only_the_topics_it_asked_for(
    embedded_log: EmbeddedLog, consume_records: ConsumeRecords
) -> None:
    await embedded_log.publish([_records(1, topic="leads.scored")[0], _records(1)[0]])

    received = await consume_records(embedded_log, "scoring", [TOPIC], 1)

    assert [r.topic for r in received] == [TOPIC]


async def test_consumer_group_resumes_after_the_last_record_it_finished_on_a_new_log_instance(
    tmp_path: Path, consume_records: ConsumeRecords
) -> None:
    published = _records(5)
    first_run = EmbeddedLog(tmp_path / "bus.db", batch_size=1)
    await first_run.start()
    await first_run.publish(published)
    # One record a batch: the handler finishes records 0 and 1 and is still busy with record 2 when the process dies.
    before_crash = await consume_records(first_run, "scoring", [TOPIC], 3)
    await first_run.stop()

    second_run = EmbeddedLog(tmp_path / "bus.db", batch_size=1)
    await second_run.start()
    try:
        after_restart = await consume_records(second_run, "scoring", [TOPIC], 3)
    finally:
        await second_run.stop()

    assert _values(before_crash) == _values(published[:3])
    assert _values(after_restart) == _values(published[2:])


async def test_every_consumer_group_gets_every_record(
    embedded_log: EmbeddedLog, consume_records: ConsumeRecords
) -> None:
    published = _records(3)
    await embedded_log.publish(published)

    scoring = await consume_records(embedded_log, "scoring", [TOPIC], 3)
    metrics = await consume_records(embedded_log, "metrics", [TOPIC], 3)

    assert _values(scoring) == _values(published)
    assert _values(metrics) == _values(published)


async def test_batch_whose_handler_raised_is_delivered_again(
    embedded_log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("baton.bus.HANDLER_RETRY_PAUSE_SECONDS", 0.01)
    await embedded_log.publish(_records(2))
    seen: list[list[bytes]] = []
    handled_again = asyncio.Event()

    async def fails_the_first_time(batch: Sequence[Record]) -> None:
        seen.append(_values(batch))
        if len(seen) == 1:
            raise RuntimeError("database briefly unavailable")
        handled_again.set()

    await run_until(embedded_log.consume("scoring", [TOPIC], fails_the_first_time), handled_again)

    assert seen == [[b'{"n":0}', b'{"n":1}'], [b'{"n":0}', b'{"n":1}']]


@pytest.mark.parametrize("second_replica_on", ["the same log", "another log on the same file"])
async def test_second_consumer_of_a_running_group_is_refused(
    tmp_path: Path, embedded_log: EmbeddedLog, second_replica_on: str
) -> None:
    await embedded_log.publish(_records(1))
    first_is_running = asyncio.Event()

    async def holds_the_record(_: Sequence[Record]) -> None:
        first_is_running.set()
        await asyncio.Future()

    async def never_called(_: Sequence[Record]) -> None:
        raise AssertionError("the refused replica must not consume")

    other = embedded_log
    if second_replica_on == "another log on the same file":
        other = EmbeddedLog(tmp_path / "bus.db")
        await other.start()
    first = asyncio.create_task(embedded_log.consume("scoring", [TOPIC], holds_the_record))
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            await first_is_running.wait()
        with pytest.raises(ReplicaRefused, match="BATON_BUS=kafka"):
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                await other.consume("scoring", [TOPIC], never_called)
    finally:
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        if other is not embedded_log:
            await other.stop()


async def test_group_can_be_consumed_again_once_its_replica_stopped(
    tmp_path: Path, consume_records: ConsumeRecords
) -> None:
    predecessor = EmbeddedLog(tmp_path / "bus.db", poll_interval=0.01)
    await predecessor.start()
    await predecessor.publish(_records(1))
    await consume_records(predecessor, "scoring", [TOPIC], 1)
    await predecessor.stop()

    successor = EmbeddedLog(tmp_path / "bus.db", poll_interval=0.01)
    await successor.start()
    try:
        received = await consume_records(successor, "scoring", [TOPIC], 1)
    finally:
        await successor.stop()

    assert _values(received) == [b'{"n":0}']


async def test_group_can_be_consumed_again_on_the_same_log_after_its_consumer_ended(
    embedded_log: EmbeddedLog, consume_records: ConsumeRecords
) -> None:
    # ServiceRuntime restarts a consumer that failed on the same bus instance; that restart is not a second replica.
    await embedded_log.publish(_records(2))
    first = await consume_records(embedded_log, "scoring", [TOPIC], 1)

    restarted = await consume_records(embedded_log, "scoring", [TOPIC], 2)

    assert _values(first) == [b'{"n":0}']
    assert _values(restarted) == [b'{"n":0}', b'{"n":1}']


def _log_connection_threads() -> set[threading.Thread]:
    # Every open aiosqlite connection runs one worker thread until it is closed.
    return {thread for thread in threading.enumerate() if "_connection_worker_thread" in thread.name}


async def test_consumer_cancelled_while_opening_its_connection_closes_it(
    embedded_log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service stopped right after it started cancels its consumers while they set up their connection.
    configuring = asyncio.Event()
    execute = aiosqlite.Connection.execute

    def execute_that_stalls_while_configuring(self: aiosqlite.Connection, sql: str, *args: Any) -> Any:
        if sql.startswith("PRAGMA journal_mode"):
            configuring.set()
            return asyncio.Future()  # never done: the consumer is cancelled while configuring its connection
        return execute(self, sql, *args)

    async def never_called(_: Sequence[Record]) -> None:
        raise AssertionError("no record was published")

    threads_before = _log_connection_threads()
    monkeypatch.setattr(aiosqlite.Connection, "execute", execute_that_stalls_while_configuring)

    await run_until(embedded_log.consume("scoring", [TOPIC], never_called), configuring)

    for thread in _log_connection_threads() - threads_before:
        # A closed connection's thread ends by itself; an open one's never does.
        await asyncio.to_thread(thread.join, READ_TIMEOUT_SECONDS)
    assert _log_connection_threads() <= threads_before, "the cancelled consumer left its log connection open"


async def test_a_consumer_group_rung_at_the_moment_it_is_stopped_stops(tmp_path: Path) -> None:
    doorbell = _WakeUp(f"\0baton-test-{tmp_path.name}")

    async def wait_for_a_ring_then_work() -> None:
        await doorbell.ring_or_after(60)
        await asyncio.Event().wait()  # what the consumer does next: read the log

    try:
        waiting = asyncio.create_task(wait_for_a_ring_then_work())
        # A publish rings the group in the same turn of the event loop as the service stops it.
        doorbell.event.set()
        asyncio.get_running_loop().call_soon(waiting.cancel)

        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await waiting
    finally:
        doorbell.close()
