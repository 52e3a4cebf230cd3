"""A consumer process that dies right after its handler's transaction commits, before the offset commit.

Run as ``python -m tests.integration.crashing_consumer DATABASE_URL BOOTSTRAP PREFIX GROUP``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from baton.bus import Record
from baton.bus.kafka import KafkaBus
from baton.consumer import EventConsumer, Incoming
from baton.db import create_engine, create_sessionmaker
from baton.events import LeadReceived


async def record_lead(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    await session.execute(text("INSERT INTO applied (lead_id) VALUES (:lead_id)"), {"lead_id": event.data.lead_id})


async def main(database_url: str, bootstrap: str, prefix: str, group: str) -> None:
    engine = create_engine(database_url)
    bus = KafkaBus(bootstrap_servers=bootstrap, prefix=prefix)
    await bus.start()
    consumer = EventConsumer(
        group=group,
        handlers={LeadReceived.event_type: record_lead},
        bus=bus,
        sessions=create_sessionmaker(engine),
    )

    async def apply_then_crash(record: Record) -> None:
        await consumer.on_record(record)
        os._exit(137)  # as abrupt as SIGKILL: no offset commit, no clean shutdown

    await bus.consume(group, consumer.topics, apply_then_crash)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
