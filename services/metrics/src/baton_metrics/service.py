"""Applying events to the read model and reading KPIs back out of it.

A consumer applies many events in one transaction, so the read model is not written one statement
per event: ``record_event`` keeps the events in the session, and just before the transaction commits
they are applied together (see ``readmodel``) — one query for the batch's leads, one for its
assignments, then one statement per table, built once and run over the batch's rows. They follow the
transaction's fate like rows would: a rollback forgets the events it recorded, and a savepoint rolled
back forgets its own and takes back into the session the events of enclosing transactions that were
written inside it. Until the commit the tables do not show them, which is why nothing reads the read
model in the transaction that records.

Concurrent batches (several replicas, each reading other partitions or topics) meet on a lead's
progress row: the batch claims its leads' rows and locks them in lead order before it reads them, so
a pipeline step whose two ends arrive in two batches is measured exactly once. Counters and
duration buckets are added to in the database (``count = count + n``), never read and rewritten.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Table, delete, event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Session, SessionTransaction

from baton.consumer import Incoming
from baton.db import dialect_insert, insert_for
from baton.events import EventData, LeadStatusChanged, SlaBreached
from baton_metrics.domain import (
    PIPELINE,
    PIPELINE_STEPS,
    SPEED_TO_LEAD,
    TIME_TO_ACCEPT,
    BucketSum,
    Cost,
    CounterSum,
    DurationCell,
    KpiIncrement,
    Targets,
    combine,
    kpi_report,
    quantile_seconds,
)
from baton_metrics.models import (
    AssignmentClock,
    CampaignCost,
    DurationBucket,
    JourneyStep,
    KpiCounter,
    LeadProgress,
)
from baton_metrics.models import Targets as TargetsRow
from baton_metrics.readmodel import LeadPath, OpenAssignment, ReadModelBatch
from baton_metrics.schemas import GroupBy, KpiReport, PipelineReport, PipelineStep

_EVENTS_KEY = "baton_metrics_events"
_KEYS_PER_QUERY = 1000
TARGETS_ROW = 1

_GROUP_COLUMNS = {"source": "source", "campaign": "campaign", "team": "team", "rep": "rep_id"}

_ByTransaction = defaultdict[SessionTransaction, list[Incoming[EventData]]]
T = TypeVar("T")


@dataclass
class _SessionEvents:
    # Not yet written, by the transaction (or savepoint) that recorded them.
    pending: _ByTransaction = field(default_factory=lambda: defaultdict(list))
    # Written inside a savepoint on behalf of an enclosing transaction: pending again if it rolls back.
    written_in: dict[SessionTransaction, _ByTransaction] = field(default_factory=dict)


def _innermost_transaction(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def record_event(session: AsyncSession, incoming: Incoming[EventData]) -> None:
    """Records an event for the read model in the session's transaction; applied when the transaction commits."""
    transaction = _innermost_transaction(session.sync_session) or session.sync_session.begin()
    recorded: _SessionEvents = session.info.setdefault(_EVENTS_KEY, _SessionEvents())
    recorded.pending[transaction].append(incoming)


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _locked_rows(session: Session, table: Any, key: Any, keys: Sequence[str]) -> Iterable[dict[str, Any]]:
    for chunk in _chunks(keys, _KEYS_PER_QUERY):
        query = select(table).where(key.in_(chunk)).order_by(key).with_for_update()
        yield from (dict(row) for row in session.execute(query).mappings())


def _load(session: Session, events: Sequence[Incoming[EventData]]) -> ReadModelBatch:
    batch = ReadModelBatch()
    lead_ids = sorted({incoming.data.lead_id for incoming in events})
    dialect = session.get_bind().dialect.name
    # Claiming the rows first gives the lock below a row to take for a lead never seen before.
    if lead_ids:
        session.execute(_claim_statement(dialect), [{"lead_id": lead_id, **_NO_PROGRESS} for lead_id in lead_ids])
    progress = LeadProgress.__table__
    for row in _locked_rows(session, progress, progress.c.lead_id, lead_ids):
        batch.leads[row["lead_id"]] = LeadPath(**row)
    assignment_ids = sorted(
        {
            incoming.data.assignment_id
            for incoming in events
            if isinstance(incoming.data, LeadStatusChanged | SlaBreached)
        }
    )
    clocks = AssignmentClock.__table__
    for row in _locked_rows(session, clocks, clocks.c.assignment_id, assignment_ids):
        batch.assignments[row["assignment_id"]] = OpenAssignment(**row)
    return batch


_NO_PROGRESS = {"source": "", "campaign": "", "team": "", "rep_id": "", "erased": False}

# The read model's statements are built once per dialect and run with a row of parameters each
# (executemany): a multi-row VALUES built per batch cost SQLAlchemy far more CPU to construct and
# compile, every batch anew, than the database took to run it. Core tables, not ORM entities: no
# unit of work is involved, so the ORM's bulk path would only add per-row work.


@cache
def _claim_statement(dialect: str) -> Any:
    return dialect_insert(dialect)(LeadProgress.__table__).on_conflict_do_nothing(index_elements=["lead_id"])


@cache
def _counts_statement(dialect: str) -> Any:
    counters = KpiCounter.__table__
    statement = dialect_insert(dialect)(counters)
    return statement.on_conflict_do_update(
        index_elements=["day", "source", "campaign", "team", "rep_id", "kpi"],
        set_={
            "count": counters.c.count + statement.excluded["count"],
            "amount": counters.c.amount + statement.excluded.amount,
        },
    )


@cache
def _durations_statement(dialect: str) -> Any:
    buckets = DurationBucket.__table__
    statement = dialect_insert(dialect)(buckets)
    return statement.on_conflict_do_update(
        index_elements=["day", "source", "campaign", "team", "rep_id", "measure", "bucket"],
        set_={"count": buckets.c.count + statement.excluded["count"]},
    )


@cache
def _replace_statement(dialect: str, model: Any, key: str) -> Any:
    statement = dialect_insert(dialect)(model.__table__)
    columns = [column.name for column in model.__table__.columns if column.name != key]
    return statement.on_conflict_do_update(
        index_elements=[key], set_={name: statement.excluded[name] for name in columns}
    )


def _fields(item: Any) -> dict[str, Any]:
    # A shallow copy: ``dataclasses.asdict`` deep-copies every value (a journey step's facts too).
    return dict(vars(item))


def _execute_many(session: Session, statement: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(statement, rows)


def _write_counts(session: Session, increments: list[KpiIncrement], dialect: str) -> None:
    rows = [
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
        for row in combine(increments)
    ]
    _execute_many(session, _counts_statement(dialect), rows)


def _write_durations(session: Session, cells: list[DurationCell], dialect: str) -> None:
    # In cell order, so that concurrent writers lock rows in the same order.
    rows = [{**_fields(cell), "count": count} for cell, count in sorted(Counter(cells).items())]
    _execute_many(session, _durations_statement(dialect), rows)


def _write(session: Session, batch: ReadModelBatch) -> None:
    dialect = session.get_bind().dialect.name
    _write_counts(session, batch.counts, dialect)
    _write_durations(session, batch.durations, dialect)
    leads = [_fields(batch.leads[lead_id]) for lead_id in sorted(batch.changed_leads)]
    _execute_many(session, _replace_statement(dialect, LeadProgress, "lead_id"), leads)
    clocks = [_fields(batch.assignments[assignment_id]) for assignment_id in sorted(batch.opened)]
    _execute_many(session, _replace_statement(dialect, AssignmentClock, "assignment_id"), clocks)
    for chunk in _chunks(sorted(batch.closed), _KEYS_PER_QUERY):
        session.execute(delete(AssignmentClock).where(AssignmentClock.assignment_id.in_(chunk)))
    for chunk in _chunks(sorted(batch.erased), _KEYS_PER_QUERY):
        session.execute(delete(JourneyStep).where(JourneyStep.lead_id.in_(chunk)))
    _execute_many(session, _JOURNEY_INSERT, [_fields(entry) for entry in batch.journey])


_JOURNEY_INSERT = insert(cast(Table, JourneyStep.__table__))


def _apply_events(session: Session, events: list[Incoming[EventData]]) -> None:
    batch = _load(session, events)
    for incoming in events:
        batch.apply(incoming)
    _write(session, batch)


@event.listens_for(Session, "before_commit")
def _apply_events_before_commit(session: Session) -> None:
    recorded: _SessionEvents | None = session.info.get(_EVENTS_KEY)
    if recorded is None or not recorded.pending:
        return
    # The innermost transaction is the one committing, or an open savepoint the commit is about to release.
    committing = _innermost_transaction(session)
    _apply_events(session, [incoming for events in recorded.pending.values() for incoming in events])
    if committing is not None and committing.nested:
        written = recorded.written_in.setdefault(committing, defaultdict(list))
        for owner, events in recorded.pending.items():
            if owner is not committing:
                written[owner].extend(events)
    recorded.pending.clear()


@event.listens_for(Session, "after_commit")
def _hand_released_savepoint_events_to_its_parent(session: Session) -> None:
    recorded: _SessionEvents | None = session.info.get(_EVENTS_KEY)
    released = session.get_nested_transaction()
    if recorded is None or released is None:
        return
    written = recorded.written_in.pop(released, None)
    parent = released.parent
    if written is None or parent is None or not parent.nested:
        return
    # Once released, the savepoint's writes are the parent's: undone if the parent rolls back.
    into = recorded.written_in.setdefault(parent, defaultdict(list))
    for owner, events in written.items():
        if owner is not parent:
            into[owner].extend(events)


@event.listens_for(Session, "after_transaction_end")
def _settle_events_at_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    recorded: _SessionEvents | None = session.info.get(_EVENTS_KEY)
    if recorded is None:
        return
    if transaction.parent is None:
        # Committed (everything was written) or rolled back (nothing of it stays): start afresh.
        del session.info[_EVENTS_KEY]
        return
    recorded.pending.pop(transaction, None)  # what a rolled-back savepoint recorded never happened
    for owner, events in recorded.written_in.pop(transaction, {}).items():
        recorded.pending[owner].extend(events)


# Reading


@dataclass(frozen=True)
class KpiFilter:
    """Which counts a report adds up: only those of a source, campaign, team or rep, when given."""

    source: str | None = None
    campaign: str | None = None
    team: str | None = None
    rep_id: str | None = None


def _where(table: Any, *, start: date | None, end: date | None, only: KpiFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(table.day >= start)
    if end is not None:
        conditions.append(table.day <= end)
    for name, value in asdict(only).items():
        if value is not None:
            conditions.append(getattr(table, name) == value)
    return conditions


async def counter_sums(
    session: AsyncSession,
    *,
    start: date | None,
    end: date | None,
    only: KpiFilter,
    group_by: str | None = None,
    kpis: Sequence[str] | None = None,
) -> list[CounterSum]:
    """The counters added up between two UTC days (inclusive), per KPI and per group column if given."""
    keys: list[InstrumentedAttribute[Any]] = [getattr(KpiCounter, group_by)] if group_by else []
    query = (
        select(KpiCounter.kpi, func.sum(KpiCounter.count), func.sum(KpiCounter.amount), *keys)
        .where(*_where(KpiCounter, start=start, end=end, only=only))
        .group_by(KpiCounter.kpi, *keys)
    )
    if kpis is not None:
        query = query.where(KpiCounter.kpi.in_(kpis))
    return [
        CounterSum(
            kpi=str(row[0]),
            count=int(row[1] or 0),
            amount=Decimal(str(row[2] or 0)),
            key=str(row[3]) if group_by else None,
        )
        for row in await session.execute(query)
    ]


async def bucket_sums(
    session: AsyncSession,
    *,
    start: date | None,
    end: date | None,
    only: KpiFilter,
    measures: ColumnElement[bool],
    group_by: str | None = None,
) -> list[BucketSum]:
    """The duration buckets added up between two UTC days (inclusive), per measure, bucket and group."""
    keys: list[InstrumentedAttribute[Any]] = [getattr(DurationBucket, group_by)] if group_by else []
    query = (
        select(DurationBucket.measure, DurationBucket.bucket, func.sum(DurationBucket.count), *keys)
        .where(measures, *_where(DurationBucket, start=start, end=end, only=only))
        .group_by(DurationBucket.measure, DurationBucket.bucket, *keys)
    )
    return [
        BucketSum(measure=str(row[0]), bucket=int(row[1]), count=int(row[2] or 0), key=str(row[3]) if keys else None)
        for row in await session.execute(query)
    ]


async def get_targets(session: AsyncSession) -> Targets:
    """The targets in force; none set by default."""
    row = await session.get(TargetsRow, TARGETS_ROW)
    if row is None:
        return Targets()
    return Targets(
        mqls_per_month=row.mqls_per_month,
        sla_compliance=row.sla_compliance,
        speed_to_lead_minutes=row.speed_to_lead_minutes,
    )


async def set_targets(session: AsyncSession, *, changes: dict[str, Any]) -> Targets:
    """Sets the targets named in ``changes`` (None clears one) and keeps the others."""
    current = asdict(await get_targets(session))
    current.update(changes)
    insert = insert_for(session)
    statement = insert(TargetsRow).values(id=TARGETS_ROW, **current)
    await session.execute(statement.on_conflict_do_update(index_elements=["id"], set_=current))
    await session.commit()
    return Targets(**current)


async def set_campaign_cost(session: AsyncSession, *, campaign: str, cost: Cost) -> None:
    """Sets what a campaign cost in total."""
    insert = insert_for(session)
    values = {"amount": cost.amount, "currency": cost.currency}
    statement = insert(CampaignCost).values(campaign=campaign, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["campaign"], set_=values))
    await session.commit()


async def campaign_costs(session: AsyncSession, *, campaign: str | None = None) -> dict[str, Cost]:
    """The known campaign costs, by campaign (only the one named, when given)."""
    query = select(CampaignCost)
    if campaign is not None:
        query = query.where(CampaignCost.campaign == campaign)
    return {row.campaign: Cost(amount=row.amount, currency=row.currency) for row in await session.scalars(query)}


async def kpi_report_between(
    session: AsyncSession,
    *,
    start: date | None,
    end: date | None,
    group_by: GroupBy | None,
    only: KpiFilter = KpiFilter(),
) -> KpiReport:
    """The KPI report between two UTC days (inclusive), overall and per group."""
    column = _GROUP_COLUMNS[group_by] if group_by else None
    sums = await counter_sums(session, start=start, end=end, only=only, group_by=column)
    durations = await bucket_sums(
        session,
        start=start,
        end=end,
        only=only,
        measures=DurationBucket.measure.in_([SPEED_TO_LEAD, TIME_TO_ACCEPT]),
        group_by=column,
    )
    costs = await campaign_costs(session, campaign=only.campaign)
    campaign_sums = (
        await counter_sums(session, start=start, end=end, only=only, group_by="campaign", kpis=["mql", "won"])
        if costs
        else []
    )
    return kpi_report(
        sums,
        start=start,
        end=end,
        group_by=group_by,
        durations=durations,
        targets=await get_targets(session),
        costs=costs,
        campaign_sums=campaign_sums,
    )


async def pipeline_report(session: AsyncSession, *, start: date | None, end: date | None) -> PipelineReport:
    """Baton's own clock between two UTC days: p50 and p99 of each pipeline step."""
    measures = [PIPELINE + step for step in PIPELINE_STEPS]
    sums = await bucket_sums(
        session, start=start, end=end, only=KpiFilter(), measures=DurationBucket.measure.in_(measures)
    )
    by_step: dict[str, dict[int, int]] = {step: {} for step in PIPELINE_STEPS}
    for counted in sums:
        by_step[counted.measure[len(PIPELINE) :]][counted.bucket] = counted.count
    return PipelineReport(
        from_=start,
        to=end,
        steps=[
            PipelineStep(
                step=step,
                count=sum(buckets.values()),
                p50_seconds=_rounded(quantile_seconds(buckets, 0.5)),
                p99_seconds=_rounded(quantile_seconds(buckets, 0.99)),
            )
            for step, buckets in by_step.items()
        ],
    )


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


async def open_assignments(session: AsyncSession, *, only: KpiFilter) -> list[OpenAssignment]:
    """The assignments whose accept or touch SLA is running, oldest first (only a rep's or team's, when given)."""
    query = select(AssignmentClock.__table__).order_by(AssignmentClock.assigned_at, AssignmentClock.assignment_id)
    if only.rep_id is not None:
        query = query.where(AssignmentClock.rep_id == only.rep_id)
    if only.team is not None:
        query = query.where(AssignmentClock.team == only.team)
    return [OpenAssignment(**row) for row in (await session.execute(query)).mappings()]


async def journey_of(session: AsyncSession, *, lead_id: str) -> list[JourneyStep]:
    """A lead's journey steps in the order they happened."""
    query = select(JourneyStep).where(JourneyStep.lead_id == lead_id).order_by(JourneyStep.occurred_at, JourneyStep.id)
    return list(await session.scalars(query))
