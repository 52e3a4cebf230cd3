"""Group commit: concurrent requests' writes are committed together, one transaction per group."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class GroupCommitClosed(RuntimeError):
    """The group commit is not running, so it takes no more items."""


@dataclass(frozen=True)
class _Waiting(Generic[ItemT, ResultT]):
    item: ItemT
    weight: int
    result: asyncio.Future[ResultT]


class GroupCommit(Generic[ItemT, ResultT]):
    """Writes items that arrive concurrently in groups, each group with one call of ``write``.

    One writer task takes whatever arrived while the previous group was being written (up to
    ``max_weight``) and hands it to ``write``, which stores the whole group in one transaction and
    returns one result per item. If that fails, each item of the group is written alone, so a bad
    item fails only its own request. A request that stops waiting before its group is taken is
    left out.
    """

    def __init__(
        self, write: Callable[[list[ItemT]], Awaitable[Sequence[ResultT]]], *, max_weight: int, name: str
    ) -> None:
        self._write = write
        self._max_weight = max_weight
        self._name = name
        self._waiting: collections.deque[_Waiting[ItemT, ResultT]] = collections.deque()
        self._arrived = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Starts the writer task."""
        self._closing = False
        self._writer = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Writes what is already waiting, then stops the writer."""
        self._closing = True
        self._arrived.set()
        if self._writer is not None:
            await self._writer
            self._writer = None

    def submit(self, item: ItemT, *, weight: int = 1) -> asyncio.Future[ResultT]:
        """Queues an item for the next group.

        Args:
            item: What to write.
            weight: How much of a group's ``max_weight`` the item uses (a batch of leads counts each lead).

        Returns:
            A future for the item's result (or its exception); cancelling it withdraws an item not yet taken.

        Raises:
            GroupCommitClosed: The writer is not running.
        """
        if self._writer is None or self._writer.done() or self._closing:
            raise GroupCommitClosed(f"{self._name} is not running")
        result: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, weight, result))
        self._arrived.set()
        return result

    async def _run(self) -> None:
        try:
            while True:
                group = self._take_group()
                if group:
                    await self._write_group(group)
                elif self._closing:
                    return
                else:
                    self._arrived.clear()
                    await self._arrived.wait()
        finally:
            # Whatever ends the writer, no request is left waiting for a write that will not come.
            while self._waiting:
                self._waiting.popleft().result.cancel()

    def _take_group(self) -> list[_Waiting[ItemT, ResultT]]:
        group: list[_Waiting[ItemT, ResultT]] = []
        weight = 0
        while self._waiting:
            waiting = self._waiting[0]
            if waiting.result.done():  # its request stopped waiting
                self._waiting.popleft()
                continue
            if group and weight + waiting.weight > self._max_weight:
                break
            group.append(self._waiting.popleft())
            weight += waiting.weight
        return group

    async def _write_group(self, group: list[_Waiting[ItemT, ResultT]]) -> None:
        try:
            try:
                results = await self._write([waiting.item for waiting in group])
            except Exception as failure:
                if len(group) == 1:
                    _fail(group[0], failure)
                    return
                logger.warning(
                    "writing a group failed; writing its items one by one",
                    exc_info=True,
                    extra={"group_commit": self._name, "items": len(group)},
                )
                for waiting in group:
                    await self._write_alone(waiting)
                return
            for waiting, result in zip(group, results, strict=True):
                _resolve(waiting, result)
        except BaseException:
            for waiting in group:
                waiting.result.cancel()
            raise

    async def _write_alone(self, waiting: _Waiting[ItemT, ResultT]) -> None:
        if waiting.result.done():
            return
        try:
            [result] = await self._write([waiting.item])
        except Exception as failure:
            _fail(waiting, failure)
        else:
            _resolve(waiting, result)


def _resolve(waiting: _Waiting[ItemT, ResultT], result: ResultT) -> None:
    if not waiting.result.done():  # a request that stopped waiting is not told; the write stands
        waiting.result.set_result(result)


def _fail(waiting: _Waiting[ItemT, ResultT], failure: Exception) -> None:
    if not waiting.result.done():
        waiting.result.set_exception(failure)
