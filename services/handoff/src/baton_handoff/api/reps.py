"""/v1/reps: the reps leads can be handed to (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select

from baton.errors import Conflict, NotFound
from baton.events import utcnow
from baton.web import AdminDep, Page, SessionDep
from baton_handoff.models import Rep
from baton_handoff.schemas import RepIn, RepOut, RepPatch

router = APIRouter(prefix="/v1/reps", tags=["reps"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_rep(body: RepIn, session: SessionDep, _: AdminDep) -> RepOut:
    """Adds a rep."""
    async with session.begin():
        if await session.get(Rep, body.rep_id) is not None:
            raise Conflict(f"rep {body.rep_id} already exists")
        now = utcnow()
        rep = Rep(**body.model_dump(), created_at=now, updated_at=now)
        session.add(rep)
    return RepOut.model_validate(rep)


@router.get("")
async def list_reps(
    session: SessionDep,
    _: AdminDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[RepOut]:
    """Lists reps by rep_id."""
    query = select(Rep).order_by(Rep.rep_id).limit(limit + 1)
    if cursor:
        query = query.where(Rep.rep_id > cursor)
    reps = (await session.scalars(query)).all()
    return Page.of(reps, limit=limit, item=RepOut.model_validate, cursor=lambda r: r.rep_id)


async def _rep(session: SessionDep, rep_id: str) -> Rep:
    rep = await session.get(Rep, rep_id)
    if rep is None:
        raise NotFound(f"no rep {rep_id}")
    return rep


@router.get("/{rep_id}")
async def get_rep(rep_id: str, session: SessionDep, _: AdminDep) -> RepOut:
    """One rep."""
    return RepOut.model_validate(await _rep(session, rep_id))


@router.patch("/{rep_id}")
async def update_rep(rep_id: str, body: RepPatch, session: SessionDep, _: AdminDep) -> RepOut:
    """Changes a rep: status, capacity, team, …"""
    async with session.begin():
        rep = await _rep(session, rep_id)
        for name, value in body.model_dump(exclude_unset=True).items():
            setattr(rep, name, value)
        rep.updated_at = utcnow()
    return RepOut.model_validate(rep)


@router.delete("/{rep_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rep(rep_id: str, session: SessionDep, _: AdminDep) -> Response:
    """Removes a rep; their assignments stay."""
    async with session.begin():
        await session.delete(await _rep(session, rep_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
