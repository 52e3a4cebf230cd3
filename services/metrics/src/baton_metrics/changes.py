"""Telling live dashboards that the read model changed.

The same mechanism as the outbox relay's wake-up: the event handlers mark their session's
transaction as one that changes the read model, and a session ``after_commit`` listener wakes this
replica's streams once the transaction has committed, never before (the read model is written just
before the commit, so a stream woken earlier would read the old totals).

Another replica's commits wake no listener here, so each replica also polls for them while a
stream is open: one cheap query every ``poll_seconds`` reads a version of the read model (the newest
journey step's id and how many steps the last ``RECENT_STEPS`` ids hold, which a late commit of a
lower id or an erasure also changes, plus the targets and campaign costs), and a new version wakes
the streams too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Select, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from baton.consumer import EventHandler, Incoming
from baton.runtime import ServiceRuntime, ServiceSpec
from baton_metrics.models import CampaignCost, JourneyStep, Targets
from baton_metrics.service import TARGETS_ROW

_CHANGED_KEY = "baton_metrics_read_model_changed"
POLL_SECONDS = 2.0
RECENT_STEPS = 10_000


def _version_query() -> Select[Any]:
    newest = select(func.coalesce(func.max(JourneyStep.id), 0)).scalar_subquery()
    recent = select(func.count(JourneyStep.id)).where(JourneyStep.id > newest - RECENT_STEPS).scalar_subquery()
    targets = [
        select(column).where(Targets.id == TARGETS_ROW).scalar_subquery()
        for column in (Targets.mqls_per_month, Targets.sla_compliance, Targets.speed_to_lead_minutes)
    ]
    costs = [
        select(aggregate).scalar_subquery()
        for aggregate in (func.count(CampaignCost.campaign), func.sum(CampaignCost.amount))
    ]
    return select(newest, recent, *targets, *costs)


class ReadModelChanges:
    """One app's signal that its read model changed: a generation that every change moves on.

    Streams remember the generation they last read at and wait for it to move on.
    """

    def __init__(self, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self.generation = 0
        self.listeners = 0
        """How many streams are open; the poll for other replicas' changes runs only while some are."""
        self.version: tuple[Any, ...] | None = None
        """The read model's version the poll read last."""
        self._changed = asyncio.Event()

    def wake(self) -> None:
        """Moves the generation on and wakes every waiting stream; called from the event loop's thread."""
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, seen: int, *, within: float) -> int:
        """Waits until the generation moves past ``seen``, at most ``within`` seconds; returns it."""
        if self.generation == seen:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(within, 0)):
                    await changed.wait()
        return self.generation

    def noticing(self, handlers: Mapping[str, EventHandler]) -> dict[str, EventHandler]:
        """The handlers, each also marking its transaction as one that changes the read model."""

        def notice(handler: EventHandler) -> EventHandler:
            @functools.wraps(handler)
            async def applying(event: Incoming[Any], session: AsyncSession) -> None:
                await handler(event, session)
                session.info[_CHANGED_KEY] = self

            return applying

        return {event_type: notice(handler) for event_type, handler in handlers.items()}

    def watching(self, spec: ServiceSpec) -> ServiceSpec:
        """The service with its handlers noticed and the poll for other replicas' changes among its workers."""
        consumers = {group: self.noticing(handlers) for group, handlers in spec.consumers.items()}
        return replace(spec, consumers=consumers, workers=(*spec.workers, self.poll_other_replicas))

    async def poll_other_replicas(self, runtime: ServiceRuntime) -> None:
        """Wakes the streams when the read model's version changes, whoever changed it (read while a stream is open)."""
        query = _version_query()
        while True:
            if self.listeners:
                async with runtime.sessions() as session:
                    version = tuple((await session.execute(query)).one())
                if self.version is not None and version != self.version:
                    self.wake()
                self.version = version
            await asyncio.sleep(self.poll_seconds)


@event.listens_for(Session, "after_commit")
def _wake_streams_after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released: nothing is committed yet
    changes: ReadModelChanges | None = session.info.pop(_CHANGED_KEY, None)
    if changes is not None:
        changes.wake()
