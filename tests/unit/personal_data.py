"""Finding a person's data anywhere in a service's database: every table, every column, every row."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.events import LeadReceived


@dataclass(frozen=True)
class Person:
    """Who asked to be forgotten, as lead-ingest sent them."""

    email: str
    first_name: str
    last_name: str
    phone: str
    title: str

    @property
    def values(self) -> tuple[str, ...]:
        return (self.email, self.first_name, self.last_name, self.phone, self.title)


GRACE = Person(
    email="grace.hopper@navy.example",
    first_name="Grace",
    last_name="Hopper",
    phone="+1 202 555 0143",
    title="Chief Technology Officer",
)
ADA = Person(
    email="ada.lovelace@engines.example",
    first_name="Ada",
    last_name="Lovelace",
    phone="+44 20 7946 0018",
    title="VP Engineering",
)


def lead_received(person: Person, *, lead_id: str, **changes: Any) -> LeadReceived:
    """What lead-ingest publishes for ``person``: a lead scoring qualifies (an executive at a large company)."""
    fields: dict[str, Any] = {
        "lead_id": lead_id,
        "source": "webinar",
        "campaign": "spring-launch",
        "email": person.email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "company": "Fleet Systems",
        "title": person.title,
        "phone": person.phone,
        "country": "US",
        "company_size": 2_500,
        "industry": "Software",
        "utm": {"utm_source": "newsletter"},
        "received_at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    }
    return LeadReceived.model_validate(fields | changes)


def _table_names(connection: Connection) -> list[str]:
    return inspect(connection).get_table_names()


async def where_found(engine: AsyncEngine, values: Iterable[str]) -> list[tuple[str, str, str]]:
    """Every (table, column, value) where a cell of the database contains one of ``values``, ignoring case."""
    wanted = [value.casefold() for value in values]
    found: list[tuple[str, str, str]] = []
    async with engine.connect() as conn:
        for table in await conn.run_sync(_table_names):
            for row in (await conn.execute(text(f'SELECT * FROM "{table}"'))).mappings():
                for column, cell in row.items():
                    held = "" if cell is None else str(cell).casefold()
                    found.extend((table, column, value) for value in wanted if value in held)
    return found
