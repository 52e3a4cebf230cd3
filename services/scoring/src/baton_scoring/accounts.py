"""Accounts' engagement as running sums: scoring a lead reads one row for its account and changes it by what
the lead's own contribution changed, whatever the account's size.

An account's engagement is the sum, over the leads whose ``account_domain`` it is, of each lead's engagement
as of the last time it was scored (``engagement_exact`` as of ``scored_at``), halved every half-life since
(see ``engine.AccountEngagement``). A transaction reads each account it needs once, keeps its own changes
beside it, and adds them to the account's row just before it commits: rows are locked then, in domain order
and after every lead row the transaction locks, so two transactions never wait for each other in a circle,
and the row ends as the sum of what every committed transaction added whatever order they came in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, event, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from baton.consumer import batch_lead_ids
from baton.db import insert_for
from baton_scoring.engine import AccountEngagement, account_value
from baton_scoring.model import ScoringModel
from baton_scoring.models import Account, LeadScore, ModelVersion

_BOOK_KEY = "baton_scoring_account_book"
_ROWS = select(Account.domain, Account.half_life_days, Account.reference_at, Account.weight, Account.as_of)
_ONE_ROW = _ROWS.where(Account.domain == bindparam("domain"))
_ACCOUNTS = cast(Table, Account.__table__)
_WRITE_ROW = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.domain == bindparam("account"))
    .values(
        half_life_days=bindparam("half_life"),
        reference_at=bindparam("reference"),
        weight=bindparam("summed"),
        as_of=bindparam("latest"),
    )
)


@dataclass
class _Held:
    """An account as this transaction sees it: its row's sum with the transaction's own changes added."""

    engagement: AccountEngagement
    changes: list[tuple[float, datetime]] = field(default_factory=list)
    """The contributions the transaction added (negative: took back), to add to the row at commit."""

    def add(self, points: float, at: datetime) -> None:
        self.engagement.add(points, at)
        self.changes.append((points, at))


@dataclass
class _Book:
    transaction: object
    model_version: int
    half_life_days: float
    accounts: dict[str, _Held] = field(default_factory=dict)


def _engagement(row: Any) -> AccountEngagement:
    return AccountEngagement(row.half_life_days, row.reference_at, row.weight, row.as_of)


def _book(session: AsyncSession, model_version: int, model: ScoringModel) -> _Book:
    if session.sync_session.in_nested_transaction():
        raise RuntimeError("account engagement is kept per transaction, not per savepoint")
    transaction = session.sync_session.get_transaction()
    book: _Book | None = session.info.get(_BOOK_KEY)
    if book is None or book.transaction is not transaction:
        book = session.info[_BOOK_KEY] = _Book(transaction, model_version, model.half_life_days)
    return book


async def _held(session: AsyncSession, book: _Book, domain: str) -> _Held:
    held = book.accounts.get(domain)
    if held is not None:
        return held
    # Account rows change only at commit, so nothing the transaction holds unflushed needs writing first.
    with session.no_autoflush:
        if not book.accounts:
            # The first account the transaction needs: read those of all the batch's known leads with it.
            batch_domains = select(LeadScore.account_domain).where(
                LeadScore.lead_id.in_(batch_lead_ids(session)), LeadScore.account_domain.is_not(None)
            )
            rows = await session.execute(_ROWS.where(or_(Account.domain.in_(batch_domains), Account.domain == domain)))
        else:
            rows = await session.execute(_ONE_ROW, {"domain": domain})
        for row in rows:
            book.accounts.setdefault(row.domain, _Held(_engagement(row)))
    return book.accounts.setdefault(domain, _Held(AccountEngagement(book.half_life_days)))


async def move(
    session: AsyncSession,
    lead: LeadScore,
    *,
    model_version: int,
    model: ScoringModel,
    domain: str | None,
    engagement: float,
    at: datetime,
) -> float | None:
    """Takes back what the lead added to its account when last scored, adds its ``engagement`` as of ``at`` to
    the account of ``domain``, and answers that account's engagement for scoring the lead at ``at``: its
    colleagues' as last scored, decayed to ``at``, plus the lead's own (None: no account)."""
    book = _book(session, model_version, model)
    if lead.model_version is not None and lead.account_domain is not None:
        previous = await _held(session, book, lead.account_domain)
        previous.add(-lead.engagement_exact, lead.scored_at)
    if domain is None:
        return None
    held = await _held(session, book, domain)
    colleagues = held.engagement.value_at(at)
    held.add(engagement, at)
    return account_value(colleagues + engagement)


async def leave(session: AsyncSession, lead: LeadScore, *, model_version: int, model: ScoringModel) -> None:
    """Takes back what a lead being forgotten added to its account."""
    if lead.account_domain is None:
        return
    book = _book(session, model_version, model)
    held = await _held(session, book, lead.account_domain)
    held.add(-lead.engagement_exact, lead.scored_at)


def _newest_half_life(session: Session, book: _Book) -> float:
    newest = session.scalar(select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1))
    if newest is None or newest.version == book.model_version:
        return book.half_life_days
    return float(newest.definition["half_life_days"])


@event.listens_for(Session, "before_commit")
def _add_changes_before_commit(session: Session) -> None:
    book: _Book | None = session.info.get(_BOOK_KEY)
    if book is None or book.transaction is not session.get_transaction() or session.in_nested_transaction():
        return
    changed = sorted(domain for domain, held in book.accounts.items() if held.changes)
    if not changed:
        return
    upsert = insert_for(session)(Account).values(
        [
            {"domain": d, "half_life_days": book.half_life_days, "reference_at": None, "weight": 0.0, "as_of": None}
            for d in changed
        ]
    )
    # Inserting or touching each row locks it, in the order given: the domains', the same in every transaction.
    locked = session.execute(
        upsert.on_conflict_do_update(index_elements=[Account.domain], set_={"domain": upsert.excluded.domain})
        .returning(*_ROWS.selected_columns)
        .execution_options(synchronize_session=False)
    ).all()
    half_life: float | None = None
    writes = []
    for row in locked:
        summed = _engagement(row)
        if summed.reference is None and summed.weight == 0.0:
            # A new account: summed under the model in force now, which a model put meanwhile may have changed.
            half_life = _newest_half_life(session, book) if half_life is None else half_life
            summed.half_life_days = half_life
        for points, at in book.accounts[row.domain].changes:
            summed.add(points, at)
        writes.append(
            {
                "account": row.domain,
                "half_life": summed.half_life_days,
                "reference": summed.reference,
                "summed": summed.weight,
                "latest": summed.as_of,
            }
        )
    session.execute(_WRITE_ROW, writes)
    book.accounts.clear()


async def rebuild(session: AsyncSession, half_life_days: float) -> int:
    """Sums every account afresh from its people under a half-life, in the caller's transaction; answers how
    many accounts there are. Account rows are locked against every other writer until the caller commits."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("LOCK TABLE scoring_accounts IN EXCLUSIVE MODE"))
    sums: dict[str, AccountEngagement] = defaultdict(lambda: AccountEngagement(half_life_days))
    people = await session.execute(
        select(LeadScore.account_domain, LeadScore.engagement_exact, LeadScore.scored_at).where(
            LeadScore.account_domain.is_not(None)
        )
    )
    for domain, engagement, scored_at in people:
        if domain is not None:
            sums[domain].add(engagement, scored_at)
    await session.execute(delete(Account))
    if sums:
        await session.execute(
            insert(Account),
            [
                {
                    "domain": domain,
                    "half_life_days": half_life_days,
                    "reference_at": summed.reference,
                    "weight": summed.weight,
                    "as_of": summed.as_of,
                }
                for domain, summed in sums.items()
            ],
        )
    return len(sums)
