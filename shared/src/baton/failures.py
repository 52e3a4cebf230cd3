"""Which failures pass by themselves and which will repeat.

A consumer retries a transient failure (the database or broker is briefly unreachable, a
serialization conflict, a deadlock) for as long as it lasts, without moving past the event; only a
failure that will repeat (an undecodable record, a schema violation, a handler's own validation
error) is worth parking in the dead-letter queue.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# SQLSTATEs of a server that cannot serve now: connection exceptions (08), insufficient resources
# such as too many connections (53), an administrator shutdown or a server starting up (57P01-57P03).
_UNREACHABLE_SQLSTATE_PREFIXES = ("08", "53")
_UNREACHABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# And of work that lost a race and may simply be run again: serialization failure, deadlock, lock
# not available, a statement cancelled (timeout).
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked", "disk i/o error", "unable to open")


def _sqlstate(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) else None


def is_unreachable(error: BaseException) -> bool:
    """Tells whether a failure says the database or the broker cannot be reached or is too busy now.

    Args:
        error: What was raised.

    Returns:
        True for lost, refused or exhausted connections, timeouts, a server shutting down or starting
        up, a locked SQLite file, and a broker that is unreachable.
    """
    return _any_in_chain(error, _is_unreachable_itself)


def is_transient(error: BaseException) -> bool:
    """Tells whether a failure is likely to pass if the same work is tried again later.

    Args:
        error: What was raised.

    Returns:
        True when ``is_unreachable``, and for serialization failures, deadlocks and lock timeouts.
    """
    return _any_in_chain(error, lambda e: _is_unreachable_itself(e) or _sqlstate(e) in _CONFLICT_SQLSTATES)


def _any_in_chain(error: BaseException, test: Callable[[BaseException], bool]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if test(current):
            return True
        original = getattr(current, "orig", None)  # SQLAlchemy keeps the driver's exception here
        current = original if isinstance(original, BaseException) else (current.__cause__ or current.__context__)
    return False


def _is_unreachable_itself(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, InterfaceError | DisconnectionError | PoolTimeoutError):
        return True
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError | PermissionError):
        return True
    state = _sqlstate(error)
    if state is not None and (state in _UNREACHABLE_SQLSTATES or state.startswith(_UNREACHABLE_SQLSTATE_PREFIXES)):
        return True
    if isinstance(error, sqlite3.OperationalError):
        return any(message in str(error).lower() for message in _SQLITE_BUSY_MESSAGES)
    module = type(error).__module__
    if module.startswith("asyncpg"):
        # asyncpg's connection-level errors carry no SQLSTATE of their own.
        return type(error).__name__ in {
            "ConnectionDoesNotExistError",
            "ConnectionFailureError",
            "CannotConnectNowError",
            "InterfaceError",
            "InternalClientError",
            "TooManyConnectionsError",
        }
    if module.startswith("aiokafka"):
        return bool(getattr(error, "retriable", False)) or type(error).__name__ in {
            "KafkaConnectionError",
            "KafkaTimeoutError",
            "RequestTimedOutError",
            "NodeNotReadyError",
            "NotLeaderForPartitionError",
            "LeaderNotAvailableError",
            "NotEnoughReplicasError",
            "NotEnoughReplicasAfterAppendError",
        }
    return False
