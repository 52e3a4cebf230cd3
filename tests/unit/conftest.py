"""Fixtures shared by the unit tests: a clean environment, a lead factory and the embedded log."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.events import LeadReceived, new_id

# Far longer than any read takes; it only turns a broken consumer into a failure instead of a hang.
READ_TIMEOUT_SECONDS = 5.0
END_OF_READ_KEY = "end-of-read"


@pytest.fixture(autouse=True)
def _no_baton_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps a developer's BATON_* variables out of the settings the tests build."""
    for name in list(os.environ):
        if name.startswith("BATON_"):
            monkeypatch.delenv(name)


@pytest.fixture
def new_lead() -> Callable[..., LeadReceived]:
    """Builds a valid ``LeadReceived`` with a fresh lead id; keyword arguments override fields."""

    def build(**changes: Any) -> LeadReceived:
        fields: dict[str, Any] = {
            "lead_id": new_id(),
            "source": "webinar-form",
            "campaign": "spring-launch",
            "email": "jane.doe@example.com",
            "first_name": "Jane",
            "last_name": "Doe",
            "company": "Acme",
            "title": "Head of Growth",
            "country": "US",
            "company_size": 250,
            "industry": "Software",
            "utm": {"utm_source": "newsletter"},
            "received_at": datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
        }
        fields.update(changes)
        return LeadReceived(**fields)

    return build


@pytest.fixture
async def embedded_log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    """A started embedded log on ``tmp_path/bus.db``, stopped after the test."""
    log = EmbeddedLog(tmp_path / "bus.db")
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


async def run_until(consuming: Coroutine[Any, Any, None], reached: asyncio.Event) -> None:
    """Runs a never-ending ``consume()`` as a task until ``reached`` is set, then cancels it.

    Args:
        consuming: The ``consume()`` call, not yet awaited.
        reached: Set by the test's handler once it has seen what it needs.

    Raises:
        TimeoutError: ``reached`` was not set within ``READ_TIMEOUT_SECONDS``.
        AssertionError: ``consume()`` returned by itself.
    """
    consumer = asyncio.create_task(consuming)
    waiter = asyncio.create_task(reached.wait())
    try:
        done, _ = await asyncio.wait(
            {consumer, waiter}, timeout=READ_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        if consumer in done:
            consumer.result()  # raises what ended the consumer, if anything did
            raise AssertionError("consume() returned although it runs until cancelled")
        if waiter not in done:
            raise TimeoutError(f"the consumer did not deliver what the test waited for within {READ_TIMEOUT_SECONDS} s")
    finally:
        for task in (waiter, consumer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _consume_until(
    log: EmbeddedLog, group: str, topics: Sequence[str], is_last: Callable[[list[Record]], bool]
) -> list[Record]:
    seen: list[Record] = []
    enough = asyncio.Event()

    async def handler(batch: Sequence[Record]) -> None:
        for record in batch:
            seen.append(record)
            if is_last(seen):
                enough.set()
                await asyncio.Future()  # never finishes: the consumer is cancelled while handling this batch

    await run_until(log.consume(group, topics, handler), enough)
    return seen


@pytest.fixture
def consume_records() -> Callable[[EmbeddedLog, str, Sequence[str], int], Awaitable[list[Record]]]:
    """Runs a consumer group until its handler has been handed ``count`` records, then cancels it.

    The handler holds on to the batch holding the last record until the cancellation, as if the
    process died while handling it: every earlier batch is finished, that one is not.
    """

    async def consume(log: EmbeddedLog, group: str, topics: Sequence[str], count: int) -> list[Record]:
        return await _consume_until(log, group, topics, lambda seen: len(seen) >= count)

    return consume


@pytest.fixture
def read_topic() -> Callable[[EmbeddedLog, str], Awaitable[list[Record]]]:
    """Returns every record on a topic so far, read by a brand-new consumer group.

    An end marker is appended first and reading stops when it arrives, so an empty topic is told
    apart from a slow one; the marker is not returned.
    """

    async def read(log: EmbeddedLog, topic: str) -> list[Record]:
        await log.publish([Record(topic=topic, key=END_OF_READ_KEY, value=b"{}")])
        seen = await _consume_until(log, f"reader-{new_id()}", [topic], lambda seen: seen[-1].key == END_OF_READ_KEY)
        return seen[:-1]

    return read


PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Asserts an RFC 9457 problem+json answer with this status and a detail; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body
