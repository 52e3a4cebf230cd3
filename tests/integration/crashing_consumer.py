"""A consumer process that dies right after its first batch's transaction commits, before the offset commit.

Run as ``python -m tests.integration.crashing_consumer DATABASE_URL BUS BUS_LOCATION PREFIX GROUP`` where
BUS is ``kafka`` (BUS_LOCATION: bootstrap servers) or ``embedded`` (BUS_LOCATION: the log's file).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from baton.bus import Bus, Record
from baton.bus.embedded import EmbeddedLog
from baton.bus.kafka import KafkaBus
from baton.consumer import EventConsumer, Incoming, handlers
from baton.db import create_engine, create_sessionmaker
from baton.events import LeadReceived


async def record_lead(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    lead = f"{event.data.lead_id}/{event.id}"
    await session.execute(text("INSERT INTO applied (lead_id) VALUES (:lead_id)"), {"lead_id": lead})


async def main(database_url: str, bus_kind: str, location: str, prefix: str, group: str) -> None:
    engine = create_engine(database_url)
    bus: Bus = (
        KafkaBus(bootstrap_servers=location, prefix=prefix, replication_factor=1)
        if bus_kind == "kafka"
        else EmbeddedLog(Path(location))
    )
    await bus.start()
    consumer = EventConsumer(group=group, handlers=handlers(record_lead), bus=bus, sessions=create_sessionmaker(engine))

    async def apply_then_crash(batch: Sequence[Record]) -> None:
        await consumer.on_batch(batch)
        os._exit(137)  # as abrupt as SIGKILL: no offset commit, no clean shutdown

    await bus.consume(group, consumer.topics, apply_then_crash)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
