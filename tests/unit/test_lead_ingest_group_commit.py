"""Group commit: what arrives during a write is written next, together; a bad item fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from baton_lead_ingest.group_commit import GroupCommit, GroupCommitClosed


class BadItem(Exception):
    pass


class Store:
    """A ``write`` that records each group, refuses groups holding "bad", and can be held mid-write."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def write(self, items: list[str]) -> list[str]:
        self.groups.append(items)
        self.writing.set()
        await self.release.wait()
        if "bad" in items:
            raise BadItem("bad item")
        return [item.upper() for item in items]

    def hold(self) -> None:
        self.writing.clear()
        self.release.clear()


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
async def writer(store: Store) -> AsyncIterator[GroupCommit[str, str]]:
    group_commit: GroupCommit[str, str] = GroupCommit(store.write, max_weight=10, name="test-writer")
    await group_commit.start()
    yield group_commit
    store.release.set()
    await group_commit.stop()


async def test_items_arriving_during_a_write_are_written_together_next(
    writer: GroupCommit[str, str], store: Store
) -> None:
    store.hold()
    first = writer.submit("a")
    await store.writing.wait()

    later = [writer.submit(item) for item in ("b", "c", "d")]
    store.release.set()

    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", "D"]
    assert store.groups == [["a"], ["b", "c", "d"]]


async def test_a_failing_item_fails_alone_and_the_rest_of_its_group_is_written(
    writer: GroupCommit[str, str], store: Store
) -> None:
    store.hold()
    blocker = writer.submit("x")
    await store.writing.wait()
    good_before, bad, good_after = writer.submit("a"), writer.submit("bad"), writer.submit("c")
    store.release.set()

    assert await blocker == "X"
    assert await good_before == "A"
    assert await good_after == "C"
    with pytest.raises(BadItem):
        await bad
    assert store.groups == [["x"], ["a", "bad", "c"], ["a"], ["bad"], ["c"]]


async def test_a_request_that_stops_waiting_before_its_group_is_taken_is_not_written(
    writer: GroupCommit[str, str], store: Store
) -> None:
    store.hold()
    blocker = writer.submit("x")
    await store.writing.wait()

    queued = asyncio.Event()

    async def request(item: str) -> str:
        result = writer.submit(item)
        queued.set()
        return await result

    withdrawn = asyncio.create_task(request("gone"))
    await queued.wait()
    kept = writer.submit("kept")
    withdrawn.cancel()
    store.release.set()

    assert await blocker == "X"
    assert await kept == "KEPT"
    with pytest.raises(asyncio.CancelledError):
        await withdrawn
    assert store.groups == [["x"], ["kept"]]


async def test_a_group_holds_at_most_max_weight(writer: GroupCommit[str, str], store: Store) -> None:
    store.hold()
    blocker = writer.submit("x")
    await store.writing.wait()
    heavy = writer.submit("heavy", weight=8)
    light = writer.submit("light", weight=2)
    over = writer.submit("over", weight=1)
    store.release.set()

    assert await asyncio.gather(blocker, heavy, light, over) == ["X", "HEAVY", "LIGHT", "OVER"]
    assert store.groups == [["x"], ["heavy", "light"], ["over"]]


async def test_an_item_heavier_than_a_group_is_written_alone(writer: GroupCommit[str, str], store: Store) -> None:
    assert await writer.submit("huge", weight=50) == "HUGE"
    assert store.groups == [["huge"]]


async def test_stopping_writes_what_is_waiting_and_then_refuses_more(store: Store) -> None:
    writer: GroupCommit[str, str] = GroupCommit(store.write, max_weight=10, name="test-writer")
    await writer.start()
    store.hold()
    first = writer.submit("a")
    await store.writing.wait()
    waiting = writer.submit("b")

    stopping = asyncio.create_task(writer.stop())
    store.release.set()
    await stopping

    assert (await first, await waiting) == ("A", "B")
    with pytest.raises(GroupCommitClosed):
        writer.submit("c")


async def test_a_writer_that_is_cancelled_leaves_no_request_waiting(store: Store) -> None:
    writer: GroupCommit[str, str] = GroupCommit(store.write, max_weight=10, name="test-writer")
    await writer.start()
    store.hold()
    writing = writer.submit("a")
    await store.writing.wait()
    waiting = writer.submit("b")

    [task] = [task for task in asyncio.all_tasks() if task.get_name() == "test-writer"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert writing.cancelled()
    assert waiting.cancelled()
    with pytest.raises(GroupCommitClosed):
        writer.submit("c")
