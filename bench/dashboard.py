"""Event → dashboard tile: from intake's 202 until metrics' ``GET /v1/stream`` pushes the lead counted.

The stream is read as a dashboard reads it: one EventSource-style connection, the token in ``?access_token=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from bench.alone import nurture_lead
from bench.pipeline import Baton
from bench.report import percentile


class EventStreamParser:
    """Reads a server-sent event stream line by line: each event once its blank line arrives."""

    def __init__(self) -> None:
        self._name = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """Takes one line without its line break; ``(event name, data)`` when it ends an event with data."""
        if not line:
            event = (self._name, "\n".join(self._data)) if self._data else None
            self._name, self._data = "message", []
            return event
        if line.startswith("event:"):
            self._name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            self._data.append(line.removeprefix("data:").removeprefix(" "))
        return None  # a comment (a ping), ``retry:`` or ``id:``


class KpiTiles:
    """Reads ``kpis`` events from metrics' stream in the background; keeps when each ``received`` total arrived."""

    def __init__(self, client: httpx.AsyncClient, url: str, token: str) -> None:
        self.client = client
        self.url = url
        self.token = token
        self.received: list[tuple[float, int]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _lines(self) -> AsyncIterator[str]:
        async with self.client.stream(
            "GET", self.url, params={"access_token": self.token}, timeout=httpx.Timeout(10, read=None)
        ) as answer:
            answer.raise_for_status()
            async for line in answer.aiter_lines():
                yield line

    async def _read(self) -> None:
        parser = EventStreamParser()
        async for line in self._lines():
            event = parser.feed(line)
            if event is not None and event[0] == "kpis":
                totals = json.loads(event[1]).get("totals") or {}
                self.received.append((time.perf_counter(), int(totals.get("received") or 0)))
                self._arrived.set()

    async def __aenter__(self) -> KpiTiles:
        self._task = asyncio.create_task(self._read())
        try:
            if await self.wait_above(-1, 10) is None:
                raise RuntimeError("the stream sent no kpis event within 10 s of connecting")
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def current(self) -> int:
        """The last ``received`` total the stream showed."""
        return self.received[-1][1] if self.received else 0

    async def wait_above(self, received: int, wait_seconds: float) -> float | None:
        """Waits for a ``kpis`` event whose ``received`` total is above ``received``; when it arrived, or None."""
        deadline = time.perf_counter() + wait_seconds
        while True:
            arrived = next((at for at, total in self.received if total > received), None)
            if arrived is not None:
                return arrived
            if self._task is not None and self._task.done():
                self._task.result()  # the stream ended: say why
                raise RuntimeError("the stream ended")
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await self._arrived.wait()


async def event_to_tile(baton: Baton, token: str, *, tag: str, leads: int, wait_seconds: float = 15) -> dict[str, Any]:
    """Posts one lead at a time on an idle system; each from its 202 until the stream's ``received`` tile counts it.

    Returns:
        ``p50_ms``, ``max_ms``, ``measured``, ``missing``, ``post_p50_ms`` (POST until its 202).
    """
    delays: list[float] = []
    posts: list[float] = []
    missing = 0
    async with httpx.AsyncClient(timeout=30) as stream_client:
        async with KpiTiles(stream_client, f"{baton.urls['metrics']}/v1/stream", token) as tiles:
            for n in range(leads):
                await asyncio.sleep(0.3)  # lets the previous lead's own events (its score) pass
                before = tiles.current
                sent = time.perf_counter()
                lead_id = await baton.post_lead(nurture_lead(tag, n))
                answered = time.perf_counter()
                arrived = await tiles.wait_above(before, wait_seconds) if lead_id is not None else None
                if arrived is None:
                    missing += 1
                    continue
                posts.append((answered - sent) * 1000)
                delays.append((arrived - answered) * 1000)
    return {
        "measured": len(delays),
        "missing": missing,
        "p50_ms": percentile(delays, 50),
        "max_ms": max(delays, default=None),
        "post_p50_ms": percentile(posts, 50),
    }
