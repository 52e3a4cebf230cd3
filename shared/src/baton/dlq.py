"""The dead-letter queues: what is parked there, and putting it back.

A consumer parks an event whose failure repeats on ``<topic>.dlq`` with the error, the attempts and
its consumer group. Replaying puts the original record back on its topic, addressed to that group
only (the other groups applied it already), and then writes a marker on the DLQ naming the entry,
so that it is no longer listed. A crash between the two means the entry is listed and may be
replayed again: the group's inbox applies the event once all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from baton.bus import Bus, Record
from baton.consumer import REPLAY_FOR_GROUP_HEADER
from baton.events import TOPICS, dlq_topic

REPLAYED_HEADER = "baton_replayed"
_DLQ_HEADERS = frozenset(
    {
        "baton_error",
        "baton_attempts",
        "baton_consumer_group",
        "baton_original_topic",
        "baton_original_offset",
        REPLAY_FOR_GROUP_HEADER,
    }
)


@dataclass(frozen=True)
class DeadLetter:
    """One parked event."""

    id: str
    topic: str
    consumer_group: str
    event_id: str | None
    event_type: str | None
    error: str
    attempts: int
    record: Record


def _entry_id(record: Record) -> str:
    return f"{record.topic}@{record.partition}:{record.offset}"


async def dead_letters(bus: Bus, *, topics: Sequence[str] = TOPICS) -> list[DeadLetter]:
    """Lists the events parked on the topics' DLQs and not replayed yet, oldest first per topic.

    Args:
        bus: A started bus.
        topics: Baton topics whose DLQs to read.

    Returns:
        The parked events.
    """
    letters: list[DeadLetter] = []
    for topic in topics:
        records = await bus.read(dlq_topic(topic))
        replayed = {r.header(REPLAYED_HEADER) for r in records if r.header(REPLAYED_HEADER) is not None}
        for record in records:
            if record.header(REPLAYED_HEADER) is not None or _entry_id(record) in replayed:
                continue
            letters.append(
                DeadLetter(
                    id=_entry_id(record),
                    topic=record.header("baton_original_topic") or topic,
                    consumer_group=record.header("baton_consumer_group") or "",
                    event_id=record.header("ce_id"),
                    event_type=record.header("ce_type"),
                    error=record.header("baton_error") or "",
                    attempts=int(record.header("baton_attempts") or 0),
                    record=record,
                )
            )
    return letters


async def replay(bus: Bus, letters: Sequence[DeadLetter]) -> int:
    """Puts parked events back on their topics for the group that parked them, and marks them replayed.

    Args:
        bus: A started bus.
        letters: Entries from ``dead_letters``.

    Returns:
        How many were replayed.
    """
    for letter in letters:
        original = letter.record
        headers = tuple(h for h in original.headers if h[0] not in _DLQ_HEADERS)
        if letter.consumer_group:
            headers = (*headers, (REPLAY_FOR_GROUP_HEADER, letter.consumer_group.encode()))
        await bus.publish([Record(topic=letter.topic, key=original.key, value=original.value, headers=headers)])
        marker = Record(
            topic=original.topic, key=original.key, value=b"", headers=((REPLAYED_HEADER, letter.id.encode()),)
        )
        await bus.publish([marker])
    return len(letters)
