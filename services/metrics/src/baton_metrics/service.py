"""Writing the KPI counters and reading them back out.

A consumer applies many events in one transaction, so counts are not written one statement per
event: ``add_count`` keeps them in the session, and they are written as one multi-row upsert just
before the transaction commits. They follow the transaction's fate like rows would: a rollback
forgets the counts it made, and a savepoint rolled back forgets its own and takes back into the
session the counts of enclosing transactions that were written inside it. Until the commit a
counter row does not show them, which is why nothing reads counters in the transaction that counts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from baton.db import insert_for
from baton_metrics.domain import CounterSum, KpiIncrement, combine, kpi_report
from baton_metrics.models import KpiCounter
from baton_metrics.schemas import GroupBy, KpiReport

_COUNTS_KEY = "baton_metrics_counts"
# Eight parameters a row: well under SQLite's and asyncpg's limits on one statement's parameters.
_ROWS_PER_STATEMENT = 500

_GROUP_COLUMNS = {
    "source": KpiCounter.source,
    "campaign": KpiCounter.campaign,
    "team": KpiCounter.team,
    "rep": KpiCounter.rep_id,
}

_ByTransaction = defaultdict[SessionTransaction, list[KpiIncrement]]


@dataclass
class _SessionCounts:
    # Not yet written, by the transaction (or savepoint) whose events made them.
    pending: _ByTransaction = field(default_factory=lambda: defaultdict(list))
    # Written inside a savepoint on behalf of an enclosing transaction: pending again if it rolls back.
    written_in: dict[SessionTransaction, _ByTransaction] = field(default_factory=dict)


def _innermost_transaction(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def add_count(session: AsyncSession, increment: KpiIncrement) -> None:
    """Adds to a KPI counter in the session's transaction; written when the transaction commits."""
    transaction = _innermost_transaction(session.sync_session) or session.sync_session.begin()
    counts: _SessionCounts = session.info.setdefault(_COUNTS_KEY, _SessionCounts())
    counts.pending[transaction].append(increment)


def _write_counts(session: Session, increments: list[KpiIncrement]) -> None:
    rows = combine(increments)
    insert = insert_for(session)
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        statement = insert(KpiCounter).values(
            [
                {
                    "day": row.cell.day,
                    "source": row.cell.source,
                    "campaign": row.cell.campaign,
                    "team": row.cell.team,
                    "rep_id": row.cell.rep_id,
                    "kpi": row.cell.kpi,
                    "count": row.count,
                    "amount": row.amount,
                }
                for row in rows[start : start + _ROWS_PER_STATEMENT]
            ]
        )
        statement = statement.on_conflict_do_update(
            index_elements=["day", "source", "campaign", "team", "rep_id", "kpi"],
            set_={
                "count": KpiCounter.count + statement.excluded.count,
                "amount": KpiCounter.amount + statement.excluded.amount,
            },
        )
        session.execute(statement)


@event.listens_for(Session, "before_commit")
def _write_counts_before_commit(session: Session) -> None:
    counts: _SessionCounts | None = session.info.get(_COUNTS_KEY)
    if counts is None or not counts.pending:
        return
    # The innermost transaction is the one committing, or an open savepoint the commit is about to release.
    committing = _innermost_transaction(session)
    _write_counts(session, [increment for increments in counts.pending.values() for increment in increments])
    if committing is not None and committing.nested:
        written = counts.written_in.setdefault(committing, defaultdict(list))
        for owner, increments in counts.pending.items():
            if owner is not committing:
                written[owner].extend(increments)
    counts.pending.clear()


@event.listens_for(Session, "after_commit")
def _hand_released_savepoint_counts_to_its_parent(session: Session) -> None:
    counts: _SessionCounts | None = session.info.get(_COUNTS_KEY)
    released = session.get_nested_transaction()
    if counts is None or released is None:
        return
    written = counts.written_in.pop(released, None)
    parent = released.parent
    if written is None or parent is None or not parent.nested:
        return
    # Once released, the savepoint's writes are the parent's: undone if the parent rolls back.
    into = counts.written_in.setdefault(parent, defaultdict(list))
    for owner, increments in written.items():
        if owner is not parent:
            into[owner].extend(increments)


@event.listens_for(Session, "after_transaction_end")
def _settle_counts_at_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    counts: _SessionCounts | None = session.info.get(_COUNTS_KEY)
    if counts is None:
        return
    if transaction.parent is None:
        # Committed (everything was written) or rolled back (nothing of it stays): start afresh.
        del session.info[_COUNTS_KEY]
        return
    counts.pending.pop(transaction, None)  # what a rolled-back savepoint counted never happened
    for owner, increments in counts.written_in.pop(transaction, {}).items():
        counts.pending[owner].extend(increments)


async def kpi_report_between(
    session: AsyncSession, *, start: date | None, end: date | None, group_by: GroupBy | None
) -> KpiReport:
    """Adds up the counters between two UTC days (inclusive), overall and per group."""
    key_column = _GROUP_COLUMNS[group_by] if group_by else None
    keys = [key_column] if key_column is not None else []
    query = select(KpiCounter.kpi, func.sum(KpiCounter.count), func.sum(KpiCounter.amount), *keys).group_by(
        KpiCounter.kpi, *keys
    )
    if start is not None:
        query = query.where(KpiCounter.day >= start)
    if end is not None:
        query = query.where(KpiCounter.day <= end)
    rows = (await session.execute(query)).all()
    return kpi_report(
        [_counter_sum(row, grouped=key_column is not None) for row in rows], start=start, end=end, group_by=group_by
    )


def _counter_sum(row: Any, *, grouped: bool) -> CounterSum:
    return CounterSum(
        kpi=str(row[0]),
        count=int(row[1] or 0),
        amount=Decimal(str(row[2] or 0)),
        key=str(row[3]) if grouped else None,
    )
