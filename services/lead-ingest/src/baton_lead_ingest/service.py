"""Storing posted leads and activities with their events, reading leads, and answers given to Idempotency-Keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Insert, Row, Update, bindparam, delete, select, tuple_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db import Base, insert_for
from baton.errors import BatonError, NotFound, Unprocessable
from baton.events import Activity, EventData, LeadActivity, LeadReceived, LeadUpdated, new_id
from baton.outbox import add_events
from baton.settings import Settings
from baton_lead_ingest.domain import PROFILE_FIELDS, LeadPost, StoredLead, settle_posts
from baton_lead_ingest.models import IdempotentAnswer, Lead
from baton_lead_ingest.schemas import (
    ActivityAccepted,
    ActivityPost,
    BatchAnswer,
    BatchItemAnswer,
    FieldError,
    LeadAccepted,
    LeadIn,
    LeadOut,
)
from baton_lead_ingest.settings import IngestSettings

T = TypeVar("T")

_LEADS = Base.metadata.tables[Lead.__tablename__]
_ANSWERS = Base.metadata.tables[IdempotentAnswer.__tablename__]
_PROFILE_COLUMNS = (*PROFILE_FIELDS, "utm")
WRITE_ATTEMPTS = 3
# A deadlock or serialization failure leaves nothing behind: the transaction can simply run again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
# Clocks of the tools that post activities drift; an activity a little ahead of ours is still believed.
ACTIVITY_CLOCK_SKEW = timedelta(minutes=5)


class IdempotencyKeyReused(BatonError):
    """The caller sent an Idempotency-Key again with a different request."""

    status = 422
    title = "Unprocessable content"


@dataclass(frozen=True)
class IdempotencyKey:
    """A caller's ``Idempotency-Key`` and the hash of the request it came with."""

    caller: str
    key: str
    request_hash: str


@dataclass(frozen=True)
class InvalidLead:
    """A lead of a batch that failed validation, and why."""

    errors: list[FieldError]


@dataclass(frozen=True)
class Intake:
    """One request's leads, waiting to be stored: a single post, or a batch answered item by item."""

    leads: Sequence[LeadIn | InvalidLead]
    received_at: datetime
    batch: bool
    key: IdempotencyKey | None = None

    @property
    def valid_leads(self) -> list[LeadIn]:
        """The leads that passed validation, in order."""
        return [lead for lead in self.leads if isinstance(lead, LeadIn)]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as given, so that a repeated request gets it again byte for byte."""

    status: int
    body: str
    repeated: bool = field(default=False, compare=False)
    """Given again to a repeated request (same key), rather than the outcome of this one."""


IntakeResult = Answer | IdempotencyKeyReused


def _profile(lead: LeadIn) -> dict[str, Any]:
    profile = {name: getattr(lead, name) for name in PROFILE_FIELDS}
    profile["utm"] = dict(lead.utm)
    return profile


def _insert_new_leads(session: AsyncSession) -> Insert:
    statement: Insert = insert_for(session)(_LEADS).on_conflict_do_nothing(index_elements=[_LEADS.c.email_normalized])
    return statement


_UPDATE_MERGED: Update = update(_LEADS).where(_LEADS.c.id == bindparam("merged_id"))


async def receive_leads(session: AsyncSession, *, posts: Sequence[tuple[LeadIn, datetime]]) -> list[LeadAccepted]:
    """Stores new people as leads, merges known people's posts into their leads, and queues one event per post."""
    # A validated LeadIn's email is already normalise.normalise_email's form: the dedupe key, computed once.
    lead_posts = [LeadPost(lead.email, _profile(lead), at) for lead, at in posts]
    first_post: dict[str, int] = {}
    for index, post in enumerate(lead_posts):
        first_post.setdefault(post.email_normalized, index)
    # Sorted, so that concurrent transactions take the same rows' locks in the same order.
    people = sorted(first_post)
    candidates = {email: new_id() for email in people}
    new_rows = [
        {
            "id": candidates[email],
            "email_normalized": email,
            "email": posts[first_post[email]][0].email,
            **lead_posts[first_post[email]].profile,
            "created_at": lead_posts[first_post[email]].received_at,
            "updated_at": lead_posts[first_post[email]].received_at,
        }
        for email in people
    ]
    inserted = await session.execute(_insert_new_leads(session).returning(_LEADS.c.email_normalized), new_rows)
    created = {email: candidates[email] for email in inserted.scalars()}
    known = [email for email in people if email not in created]
    stored: dict[str, StoredLead] = {}
    if known:
        rows = await session.execute(
            select(_LEADS.c.id, _LEADS.c.email_normalized, *(_LEADS.c[name] for name in _PROFILE_COLUMNS))
            .where(_LEADS.c.email_normalized.in_(known))
            .order_by(_LEADS.c.email_normalized)
            .with_for_update()
        )
        stored = {row.email_normalized: StoredLead(row.id, _stored_profile(row)) for row in rows}
    settlement = settle_posts(lead_posts, created=created, stored=stored)
    if settlement.merged:
        await session.execute(
            _UPDATE_MERGED,
            [
                {"merged_id": merged.lead_id, **merged.profile, "updated_at": merged.updated_at}
                for merged in sorted(settlement.merged, key=lambda merged: merged.lead_id)
            ],
        )
    events: list[EventData] = []
    for (lead, at), post, outcome in zip(posts, lead_posts, settlement.outcomes, strict=True):
        activities = [
            Activity(type=activity.type, occurred_at=activity.occurred_at, properties=activity.properties)
            for activity in lead.activities
        ]
        event: EventData
        if outcome.duplicate:
            changed = dict(outcome.changes)
            event = LeadUpdated(lead_id=outcome.lead_id, changed=changed, activities=activities, updated_at=at)
        else:
            event = LeadReceived(
                lead_id=outcome.lead_id, email=lead.email, activities=activities, received_at=at, **post.profile
            )
        events.append(event)
    await add_events(session, events)
    return [LeadAccepted(lead_id=outcome.lead_id, duplicate=outcome.duplicate) for outcome in settlement.outcomes]


def _stored_profile(row: Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _PROFILE_COLUMNS}


@dataclass(frozen=True)
class HeldAnswer:
    """An answer already given to a key, and the hash of the request it answered."""

    answer: Answer
    request_hash: str


async def find_answers(session: AsyncSession, *, keys: Sequence[IdempotencyKey]) -> dict[tuple[str, str], HeldAnswer]:
    """Returns the answers already given to these callers' keys, by (caller, key)."""
    rows = await session.execute(
        select(_ANSWERS.c.caller, _ANSWERS.c.key, _ANSWERS.c.request_hash, _ANSWERS.c.status, _ANSWERS.c.body).where(
            tuple_(_ANSWERS.c.caller, _ANSWERS.c.key).in_([(key.caller, key.key) for key in keys])
        )
    )
    return {(row.caller, row.key): HeldAnswer(Answer(row.status, row.body), row.request_hash) for row in rows}


def _answer_for(intake: Intake, accepted: Sequence[LeadAccepted]) -> Answer:
    if not intake.batch:
        [only] = accepted
        return Answer(status=202, body=only.model_dump_json())
    stored = iter(accepted)
    items = []
    for index, lead in enumerate(intake.leads):
        if isinstance(lead, InvalidLead):
            items.append(BatchItemAnswer(index=index, status=422, errors=lead.errors))
        else:
            outcome = next(stored)
            items.append(BatchItemAnswer(index=index, status=202, lead_id=outcome.lead_id, duplicate=outcome.duplicate))
    return Answer(status=200, body=BatchAnswer(items=items).model_dump_json(exclude_none=True))


async def store_intakes(session: AsyncSession, intakes: Sequence[Intake]) -> list[IntakeResult]:
    """Stores requests' leads in the session's transaction and answers each; a repeated key gets its first answer."""
    keys = [intake.key for intake in intakes if intake.key is not None]
    held = await find_answers(session, keys=keys) if keys else {}
    first_with_key: dict[tuple[str, str], int] = {}
    storing: list[int] = []
    for index, intake in enumerate(intakes):
        if intake.key is not None:
            ident = (intake.key.caller, intake.key.key)
            if ident in held or ident in first_with_key:
                continue  # answered below: by the answer held, or like the request that brought the key first
            first_with_key[ident] = index
        storing.append(index)

    posts = [(lead, intakes[index].received_at) for index in storing for lead in intakes[index].valid_leads]
    accepted = iter(await receive_leads(session, posts=posts) if posts else [])
    answers = {
        index: _answer_for(intakes[index], [next(accepted) for _ in intakes[index].valid_leads]) for index in storing
    }

    remembered: list[dict[str, Any]] = []
    for ident, index in sorted(first_with_key.items()):
        key, answer = intakes[index].key, answers[index]
        assert key is not None
        held[ident] = HeldAnswer(answer, key.request_hash)
        remembered.append(
            {
                "caller": key.caller,
                "key": key.key,
                "request_hash": key.request_hash,
                "status": answer.status,
                "body": answer.body,
                "created_at": intakes[index].received_at,
            }
        )
    if remembered:
        # A concurrent request with the same key that commits first makes this fail; the retry replays its answer.
        await session.execute(_ANSWERS.insert(), remembered)
    results: list[IntakeResult] = []
    for index, intake in enumerate(intakes):
        if index in answers:
            results.append(answers[index])
        else:
            assert intake.key is not None
            results.append(_repeat(held[(intake.key.caller, intake.key.key)], intake.key))
    return results


def _repeat(held: HeldAnswer, key: IdempotencyKey) -> IntakeResult:
    if held.request_hash != key.request_hash:
        return IdempotencyKeyReused(
            f"the Idempotency-Key {key.key!r} was already used with a different request; a new request needs a new key"
        )
    return replace(held.answer, repeated=True)


def _retryable(error: DBAPIError) -> bool:
    return isinstance(error, IntegrityError) or getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


async def write_retrying(
    sessions: async_sessionmaker[AsyncSession], store: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Runs ``store`` in one transaction; a lost race with another writer runs it again."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            async with sessions() as session, session.begin():
                result = await store(session)
        except DBAPIError as error:
            if attempt == WRITE_ATTEMPTS or not _retryable(error):
                raise
        else:
            return result
    raise AssertionError("unreachable")


async def commit_intakes(sessions: async_sessionmaker[AsyncSession], intakes: Sequence[Intake]) -> list[IntakeResult]:
    """Stores requests' leads in one transaction and answers each; a lost race with another writer runs it again."""
    return await write_retrying(sessions, lambda session: store_intakes(session, intakes))


async def forget_old_answers(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Deletes the Idempotency-Key answers older than their retention; returns how many."""
    retention = settings if isinstance(settings, IngestSettings) else IngestSettings()
    days = retention.idempotency_retention_days
    result = await session.execute(
        delete(IdempotentAnswer).where(IdempotentAnswer.created_at < now - timedelta(days=days))
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def find_lead(session: AsyncSession, lead_id: str) -> LeadOut:
    """Returns the lead with this id as it is held.

    Raises:
        NotFound: No lead has this id.
    """
    lead = await session.get(Lead, lead_id)
    if lead is None:
        raise NotFound(f"no lead has the id {lead_id!r}")
    return LeadOut(
        lead_id=lead.id,
        email=lead.email,
        **{name: getattr(lead, name) for name in PROFILE_FIELDS},
        utm=dict(lead.utm or {}),
        created_at=lead.created_at,
        updated_at=lead.updated_at,
    )


def check_activity(activity: ActivityPost, now: datetime) -> None:
    """Refuses an activity that names its lead both ways or neither, or that happened in the future.

    Raises:
        Unprocessable: Naming the failing fields.
    """
    errors: list[dict[str, Any]] = []
    if (activity.lead_id is None) == (activity.email is None):
        given = "both were given" if activity.lead_id is not None else "neither was given"
        msg = f"give exactly one of lead_id or email; {given}"
        errors += [{"loc": ["body", field], "msg": msg, "type": "one_of"} for field in ("lead_id", "email")]
    if activity.occurred_at > now + ACTIVITY_CLOCK_SKEW:
        minutes = int(ACTIVITY_CLOCK_SKEW.total_seconds() // 60)
        msg = f"is in the future (more than {minutes} minutes after {now.isoformat()})"
        errors.append({"loc": ["body", "occurred_at"], "msg": msg, "type": "future"})
    if errors:
        fields = ", ".join(".".join(error["loc"]) for error in errors)
        raise Unprocessable(f"request failed validation: {fields}", errors=errors)


async def _lead_of(session: AsyncSession, activity: ActivityPost) -> str:
    if activity.lead_id is not None:
        lead_id = await session.scalar(select(_LEADS.c.id).where(_LEADS.c.id == activity.lead_id))
        missing = f"no lead has the id {activity.lead_id!r} yet"
    else:
        assert activity.email is not None
        # ActivityPost's email is validated to the dedupe key, like a lead's.
        lead_id = await session.scalar(select(_LEADS.c.id).where(_LEADS.c.email_normalized == activity.email))
        missing = f"no lead has the e-mail {activity.email!r} yet"
    if lead_id is None:
        raise NotFound(f"{missing}; send the lead first (POST /v1/leads), then the activity again")
    return str(lead_id)


async def store_activity(
    session: AsyncSession, activity: ActivityPost, *, key: IdempotencyKey | None, now: datetime
) -> IntakeResult:
    """Publishes an activity of a known lead in the session's transaction; a repeated key gets its first answer.

    Raises:
        NotFound: No lead has the activity's id or e-mail; nothing is remembered under the key, so the
            caller can send the lead and repeat the same request.
    """
    if key is not None:
        held = await find_answers(session, keys=[key])
        if (key.caller, key.key) in held:
            return _repeat(held[(key.caller, key.key)], key)
    lead_id = await _lead_of(session, activity)
    event = LeadActivity(
        lead_id=lead_id,
        activity_type=activity.type,
        occurred_at=activity.occurred_at,
        properties=activity.properties,
    )
    await add_events(session, [event])
    answer = Answer(status=202, body=ActivityAccepted(lead_id=lead_id).model_dump_json())
    if key is not None:
        # A concurrent request with the same key that commits first makes this fail; the retry replays its answer.
        await session.execute(
            _ANSWERS.insert(),
            [
                {
                    "caller": key.caller,
                    "key": key.key,
                    "request_hash": key.request_hash,
                    "status": answer.status,
                    "body": answer.body,
                    "created_at": now,
                }
            ],
        )
    return answer


async def commit_activity(
    sessions: async_sessionmaker[AsyncSession], activity: ActivityPost, *, key: IdempotencyKey | None, now: datetime
) -> IntakeResult:
    """Publishes an activity of a known lead in one transaction; a lost race with another writer runs it again."""
    return await write_retrying(sessions, lambda session: store_activity(session, activity, key=key, now=now))
