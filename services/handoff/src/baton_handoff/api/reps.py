"""/v1/reps: the reps leads can be handed to (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from baton.web import AdminDep, NowDep, Page, SessionDep
from baton_handoff import service
from baton_handoff.schemas import RepIn, RepOut, RepPatch

router = APIRouter(prefix="/v1/reps", tags=["reps"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_rep(body: RepIn, session: SessionDep, now: NowDep, principal: AdminDep) -> RepOut:
    """Adds a rep; an existing rep_id answers 409."""
    async with session.begin():
        rep = await service.create_rep(session, rep_in=body, principal=principal, now=now)
    return RepOut.model_validate(rep)


@router.get("")
async def list_reps(
    session: SessionDep,
    _: AdminDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[RepOut]:
    """Lists reps by rep_id."""
    reps = await service.list_reps(session, after=cursor, limit=limit + 1)
    return Page.of(reps, limit=limit, item=RepOut.model_validate, cursor=lambda r: r.rep_id)


@router.get("/{rep_id}")
async def get_rep(rep_id: str, session: SessionDep, _: AdminDep) -> RepOut:
    """One rep."""
    return RepOut.model_validate(await service.get_rep(session, rep_id=rep_id))


@router.patch("/{rep_id}")
async def update_rep(rep_id: str, body: RepPatch, session: SessionDep, now: NowDep, principal: AdminDep) -> RepOut:
    """Changes a rep: status, capacity, team, …; null clears what a rep may lack (email, team, hours, ooo_until)."""
    async with session.begin():
        rep = await service.update_rep(session, rep_id=rep_id, patch=body, principal=principal, now=now)
    return RepOut.model_validate(rep)


@router.delete("/{rep_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rep(
    rep_id: str, session: SessionDep, now: NowDep, principal: AdminDep, reassign: bool = False
) -> Response:
    """Removes a rep; one holding open assignments answers 409 unless ``?reassign=true`` routes them again."""
    async with session.begin():
        await service.delete_rep(session, rep_id=rep_id, reassign=reassign, principal=principal, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
