"""The embedded durable log: an append-only SQLite table that consumer groups read with their own offsets.

It is the event bus of the embedded default. Every publish is one fsynced transaction, so a crash
loses nothing that ``publish`` acknowledged; a group's offsets move once per batch, past the
records whose handler returned, so a crash mid-batch means those events are read again (and the
consumer's inbox makes that harmless). A publish wakes the other processes' consumers at once
through a datagram to each group's abstract Unix socket; they also look every second in case a
wake-up was lost. One process may own a service or consumer group at a time: a second replica is
refused, since scale-out is Kafka's job.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from baton.bus import BatchHandler, Record, ReplicaRefused, handle_or_pause
from baton.events import DLQ_SUFFIX

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
CREATE TABLE IF NOT EXISTS consumer_groups (group_id TEXT PRIMARY KEY);
"""

DEFAULT_BATCH_SIZE = 500
FALLBACK_POLL_SECONDS = 1.0
UNWOKEN_POLL_SECONDS = 0.05


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


def _row_to_record(seq: int, topic: str, key: str, headers: str, value: bytes) -> Record:
    return Record(topic=topic, key=key, value=bytes(value), headers=_decode_headers(headers), offset=seq)


class _WakeUp:
    """A group's doorbell: an abstract Unix datagram socket that publishers ring after each commit."""

    def __init__(self, address: str) -> None:
        self.event = asyncio.Event()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._socket.bind(address)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._socket.fileno(), self._drain)

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._socket.recv(64):
                pass
        self.event.set()

    async def ring_or_after(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.event.wait()
        self.event.clear()

    def close(self) -> None:
        self._loop.remove_reader(self._socket.fileno())
        self._socket.close()


class EmbeddedLog:
    """The bus on one SQLite file, shared by the services' processes on one machine."""

    def __init__(
        self, path: Path, *, batch_size: int = DEFAULT_BATCH_SIZE, poll_interval: float = FALLBACK_POLL_SECONDS
    ) -> None:
        self.path = path
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._lock_fds: list[int] = []
        self._ringer: socket.socket | None = None
        self.idle = asyncio.Event()
        """Set while a consumer on this log has read everything there is and waits for more."""

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await _connect(self.path)
        await self._conn.executescript(_SCHEMA)
        self._ringer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._ringer.setblocking(False)

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._ringer is not None:
            self._ringer.close()
            self._ringer = None
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds.clear()

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("embedded log is not started")
        return self._conn

    def _wake_address(self, group: str) -> str:
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:24]
        return f"\0baton-{digest}-{group}"

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
        await self._ring_every_group(conn)

    async def _ring_every_group(self, conn: aiosqlite.Connection) -> None:
        # Read every time (a tiny table): a group that registered a moment ago must be woken too.
        async with conn.execute("SELECT group_id FROM consumer_groups") as cursor:
            groups = [row[0] for row in await cursor.fetchall()]
        if self._ringer is None:
            return
        for group in groups:
            # Nobody listening, or a doorbell already full: either way that group will look soon.
            with contextlib.suppress(OSError):
                self._ringer.sendto(b"\x01", self._wake_address(group))

    async def ping(self) -> bool:
        try:
            await self._connection().execute("SELECT 1")
        except Exception:
            logger.warning("embedded log unreachable", exc_info=True)
            return False
        return True

    async def claim(self, name: str) -> None:
        self._claim(name)

    def _claim(self, name: str) -> int:
        lock_path = self.path.with_name(f"{self.path.name}.{name}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReplicaRefused(
                f"{name!r} already runs on the embedded log ({self.path}); the embedded log serves one replica "
                "per service: set BATON_BUS=kafka to run more"
            ) from None
        self._lock_fds.append(fd)
        return fd

    def _release(self, fd: int) -> None:
        if fd in self._lock_fds:
            self._lock_fds.remove(fd)
            os.close(fd)

    async def consume(self, group: str, topics: Sequence[str], handler: BatchHandler) -> None:
        claim = self._claim(f"group-{group}")
        conn: aiosqlite.Connection | None = None
        wake_up: _WakeUp | None = None
        try:
            conn = await _connect(self.path)
            poll_interval = self.poll_interval
            try:
                wake_up = _WakeUp(self._wake_address(group))
            except OSError:
                # Abstract Unix sockets are Linux's: elsewhere the group looks often instead of being woken.
                logger.warning("no wake-ups on this system; polling the embedded log", extra={"group": group})
                poll_interval = min(poll_interval, UNWOKEN_POLL_SECONDS)
            await conn.execute("INSERT OR IGNORE INTO consumer_groups (group_id) VALUES (?)", (group,))
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
                    self.idle.set()
                    if wake_up is not None:
                        await wake_up.ring_or_after(poll_interval)
                    else:
                        await asyncio.sleep(poll_interval)
                    self.idle.clear()
                    continue
                if await handle_or_pause(handler, batch, group=group):
                    handled: dict[str, int] = {}
                    for record in batch:
                        handled[record.topic] = record.offset
                    # One fsynced write per batch, shielded so a cancellation cannot separate the
                    # handler's commit from the position that covers it for longer than this write.
                    await asyncio.shield(_save_positions(conn, group, handled))
                    positions.update(handled)
        finally:
            if wake_up is not None:
                wake_up.close()
            if conn is not None:
                await asyncio.shield(conn.close())
            self._release(claim)

    async def _read_batch(self, conn: aiosqlite.Connection, positions: dict[str, int]) -> list[Record]:
        records: list[Record] = []
        for topic, position in positions.items():
            async with conn.execute(
                "SELECT seq, topic, key, headers, value FROM log WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?",
                (topic, position, self.batch_size),
            ) as cursor:
                records.extend(_row_to_record(*row) for row in await cursor.fetchall())
        records.sort(key=lambda r: r.offset)
        return records[: self.batch_size]

    async def read(self, topic: str) -> list[Record]:
        async with self._connection().execute(
            "SELECT seq, topic, key, headers, value FROM log WHERE topic = ? ORDER BY seq", (topic,)
        ) as cursor:
            return [_row_to_record(*row) for row in await cursor.fetchall()]

    async def lag(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        # seq counts across every topic, so a topic's lag is counted, not subtracted; the
        # (topic, seq) index keeps that proportional to the lag itself.
        lag: dict[tuple[str, int], int] = {}
        conn = self._connection()
        for topic in topics:
            async with conn.execute(
                "SELECT count(*) FROM log WHERE topic = ? AND seq > "
                "coalesce((SELECT position FROM offsets WHERE group_id = ? AND topic = ?), 0)",
                (topic, group, topic),
            ) as cursor:
                row = await cursor.fetchone()
            lag[topic, 0] = int(row[0]) if row is not None else 0
        return lag

    async def prune(self, *, before: datetime) -> int:
        cutoff = before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        conn = self._connection()
        async with self._write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                # Only what every group that reads a topic has passed; dead letters wait for an operator.
                cursor = await conn.execute(
                    "DELETE FROM log WHERE appended_at < ? AND topic NOT LIKE ? AND seq <= "
                    "(SELECT min(position) FROM offsets WHERE offsets.topic = log.topic)",
                    (cutoff, f"%{DLQ_SUFFIX}"),
                )
                pruned = cursor.rowcount
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
        return pruned


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
