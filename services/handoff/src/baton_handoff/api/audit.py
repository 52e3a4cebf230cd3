"""/v1/audit: who changed what (admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from baton.web import AdminDep, Page, SessionDep
from baton_handoff import audit
from baton_handoff.audit import Action, Entity

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class AuditEntryOut(BaseModel):
    """One change: who made it, when, to what, and the entity before and after (null when created or deleted)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    at: datetime
    actor: str
    actor_rep_id: str | None
    actor_team: str | None
    action: Action
    entity: Entity
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@router.get("")
async def list_audit(
    session: SessionDep,
    _: AdminDep,
    entity: Entity | None = None,
    entity_id: Annotated[str | None, Query(max_length=320)] = None,
    # Positions fit a 32-bit integer column on every database.
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,9}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[AuditEntryOut]:
    """The audit log, newest first, optionally of one entity."""
    rows = await audit.list_changes(
        session,
        entity=entity,
        entity_id=entity_id,
        before_seq=int(cursor) if cursor else None,
        limit=limit + 1,
    )
    return Page.of(rows, limit=limit, item=AuditEntryOut.model_validate, cursor=lambda e: str(e.seq))
