"""The embedded durable log: an append-only SQLite table that consumer groups read with their own offsets.

It is the event bus of the embedded default. Every publish is one fsynced transaction, so a crash
loses nothing that ``publish`` acknowledged; offsets move once per batch, past the records whose
handler returned, so a crash mid-batch means those events are read again (and the consumer's inbox
makes that harmless). One process
may own a consumer group at a time: a second replica is refused, since scale-out is Kafka's job.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from baton.bus import Record, RecordHandler, ReplicaRefused, handle_or_pause

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    headers TEXT NOT NULL,
    value BLOB NOT NULL,
    appended_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS log_topic_seq ON log (topic, seq);
CREATE TABLE IF NOT EXISTS offsets (
    group_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic)
);
"""

BATCH_SIZE = 200


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA busy_timeout = 30000")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
    except BaseException:
        # Cancelled (a service stopping as it starts) or failed: never leave the connection's thread behind.
        await asyncio.shield(conn.close())
        raise
    return conn


def _encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[name, base64.b64encode(raw).decode()] for name, raw in headers])


def _decode_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, base64.b64decode(raw)) for name, raw in json.loads(text))


class EmbeddedLog:
    """The bus on one SQLite file, shared by the services' processes on one machine."""

    def __init__(self, path: Path, *, poll_interval: float = 0.05) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._lock_fds: list[int] = []

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await _connect(self.path)
        await self._conn.executescript(_SCHEMA)

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds.clear()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("embedded log is not started")
        return self._conn

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        conn = self._connection()
        async with self._write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await conn.executemany(
                    "INSERT INTO log (topic, key, headers, value) VALUES (?, ?, ?, ?)",
                    [(r.topic, r.key, _encode_headers(r.headers), r.value) for r in records],
                )
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def ping(self) -> bool:
        try:
            await self._connection().execute("SELECT 1")
        except Exception:
            logger.warning("embedded log unreachable", exc_info=True)
            return False
        return True

    def _claim_group(self, group: str) -> int:
        lock_path = self.path.with_name(f"{self.path.name}.{group}.lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReplicaRefused(
                f"consumer group {group!r} already runs on the embedded log ({self.path}); the embedded log "
                "serves one replica per service: set BATON_BUS=kafka to run more"
            ) from None
        self._lock_fds.append(fd)
        return fd

    def _release_group(self, fd: int) -> None:
        if fd in self._lock_fds:
            self._lock_fds.remove(fd)
            os.close(fd)

    async def consume(self, group: str, topics: Sequence[str], handler: RecordHandler) -> None:
        claim = self._claim_group(group)
        try:
            conn = await _connect(self.path)
        except BaseException:
            self._release_group(claim)
            raise
        try:
            positions = dict.fromkeys(topics, 0)
            async with conn.execute(
                f"SELECT topic, position FROM offsets WHERE group_id = ? AND topic IN ({_marks(topics)})",
                (group, *topics),
            ) as cursor:
                async for topic, position in cursor:
                    positions[topic] = position
            while True:
                batch = await self._read_batch(conn, positions)
                if not batch:
                    await asyncio.sleep(self.poll_interval)
                    continue
                handled: dict[str, int] = {}
                try:
                    for record in batch:
                        if not await handle_or_pause(handler, record, group=group):
                            break
                        handled[record.topic] = record.offset
                finally:
                    # One fsynced write per batch, also when cancelled mid-batch: the group's
                    # position covers exactly the records whose handler returned.
                    if handled:
                        await asyncio.shield(_save_positions(conn, group, handled))
                        positions.update(handled)
        finally:
            await asyncio.shield(conn.close())
            self._release_group(claim)

    async def _read_batch(self, conn: aiosqlite.Connection, positions: dict[str, int]) -> list[Record]:
        records: list[Record] = []
        for topic, position in positions.items():
            async with conn.execute(
                "SELECT seq, topic, key, headers, value FROM log WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (topic, position, BATCH_SIZE),
            ) as cursor:
                async for seq, row_topic, key, headers, value in cursor:
                    records.append(
                        Record(
                            topic=row_topic, key=key, value=bytes(value), headers=_decode_headers(headers), offset=seq
                        )
                    )
        records.sort(key=lambda r: r.offset)
        return records[:BATCH_SIZE]


async def _save_positions(conn: aiosqlite.Connection, group: str, positions: dict[str, int]) -> None:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.executemany(
            "INSERT INTO offsets (group_id, topic, position) VALUES (?, ?, ?) "
            "ON CONFLICT (group_id, topic) DO UPDATE SET position = excluded.position",
            [(group, topic, position) for topic, position in positions.items()],
        )
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


def _marks(items: Sequence[str]) -> str:
    return ", ".join("?" for _ in items)
