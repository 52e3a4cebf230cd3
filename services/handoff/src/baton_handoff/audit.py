"""The audit log: who changed which rep, account, routing rule, webhook or assignment, when, and from what to what."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic_core import to_jsonable_python
from sqlalchemy import JSON, Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from baton.auth import Principal
from baton.db import Base, UTCDateTime
from baton.events import new_id

Action = Literal["create", "update", "delete"]
Entity = Literal["rep", "account", "routing_rule", "webhook", "assignment"]
ACTIONS: tuple[str, ...] = get_args(Action)
ENTITIES: tuple[str, ...] = get_args(Entity)
# The audit keeps what changed for the admins who read it, personal data included, but never a secret.
SECRET_KEYS = frozenset({"secret", "signing_secret"})


class AuditEntry(Base):
    """One change an admin (or a team lead handing out a queued lead) made."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    actor_rep_id: Mapped[str | None] = mapped_column(String(100))
    actor_team: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(320))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


def without_secrets(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with every key named like a secret left out, at any depth."""
    if isinstance(value, Mapping):
        return {str(key): without_secrets(item) for key, item in value.items() if key not in SECRET_KEYS}
    if isinstance(value, list | tuple):
        return [without_secrets(item) for item in value]
    return to_jsonable_python(value)


async def record_change(
    session: AsyncSession,
    *,
    principal: Principal,
    action: Action,
    entity: str,
    entity_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    """Adds a change to the audit log in the caller's transaction, so it is kept exactly when the change is."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
    if entity not in ENTITIES:
        raise ValueError(f"entity must be one of {', '.join(ENTITIES)}; got {entity!r}")
    session.add(
        AuditEntry(
            id=new_id(),
            at=now,
            actor=principal.subject,
            actor_rep_id=principal.rep_id,
            actor_team=principal.team,
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=None if before is None else without_secrets(before),
            after=None if after is None else without_secrets(after),
        )
    )


async def list_changes(
    session: AsyncSession, *, entity: str | None, entity_id: str | None, before_seq: int | None, limit: int
) -> Sequence[AuditEntry]:
    """Audit entries, newest first, optionally of one entity (and one of its ids), older than ``before_seq``."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    return (await session.scalars(query)).all()
