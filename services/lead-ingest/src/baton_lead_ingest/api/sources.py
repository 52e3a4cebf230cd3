"""/v1/sources: webhook sources for admins — their settings, and their secrets answered once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from baton.web import PROBLEM_JSON, AdminDep, NowDep, SessionDep
from baton_lead_ingest.rate_limits import TokenRateLimit
from baton_lead_ingest.secret_box import SecretBox
from baton_lead_ingest.sources import (
    SourceCache,
    SourceIn,
    SourceOut,
    SourceUpdate,
    SourceWithSecret,
    create_source,
    find_source,
    list_sources,
    rotate_source_secret,
    source_out,
    update_source,
)

router = APIRouter(prefix="/v1", tags=["sources"], dependencies=[TokenRateLimit])

_NOT_FOUND = {"description": "No source has this name.", "content": {PROBLEM_JSON: {}}}


async def get_secret_box(request: Request) -> SecretBox:
    """The box that keeps source secrets encrypted."""
    box: SecretBox = request.app.state.secret_box
    return box


async def get_source_cache(request: Request) -> SourceCache:
    """The sources' settings as the webhook route reads them."""
    cache: SourceCache = request.app.state.sources
    return cache


SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]
SourceCacheDep = Annotated[SourceCache, Depends(get_source_cache)]


@router.post(
    "/sources",
    status_code=status.HTTP_201_CREATED,
    response_model=SourceWithSecret,
    responses={409: {"description": "A source has this name.", "content": {PROBLEM_JSON: {}}}},
)
async def post_source(
    new: SourceIn, session: SessionDep, _: AdminDep, box: SecretBoxDep, now: NowDep
) -> SourceWithSecret:
    """Creates a webhook source and answers its secret, this once; Baton keeps it encrypted and never shows it again."""
    async with session.begin():
        return await create_source(session, new=new, box=box, now=now)


@router.get("/sources", response_model=list[SourceOut])
async def get_sources(session: SessionDep, _: AdminDep, now: NowDep) -> list[SourceOut]:
    """Lists every source, by name, without secrets."""
    return await list_sources(session, now=now)


@router.get("/sources/{source}", response_model=SourceOut, responses={404: _NOT_FOUND})
async def get_source(source: str, session: SessionDep, _: AdminDep, now: NowDep) -> SourceOut:
    """Returns a source's settings, without its secret."""
    return source_out(await find_source(session, source), now)


@router.put("/sources/{source}", response_model=SourceOut | SourceWithSecret, responses={404: _NOT_FOUND})
async def put_source(
    source: str,
    update: SourceUpdate,
    session: SessionDep,
    _: AdminDep,
    box: SecretBoxDep,
    cache: SourceCacheDep,
    now: NowDep,
) -> SourceOut | SourceWithSecret:
    """Replaces a source's settings; a new `verification` method comes with a new secret, answered this once."""
    async with session.begin():
        updated = await update_source(session, name=source, update=update, box=box, now=now)
    cache.forget(source)
    return updated


@router.post("/sources/{source}:rotate-secret", response_model=SourceWithSecret, responses={404: _NOT_FOUND})
async def post_rotate_secret(
    source: str, session: SessionDep, _: AdminDep, box: SecretBoxDep, cache: SourceCacheDep, now: NowDep
) -> SourceWithSecret:
    """Gives a source a new secret, answered this once; the previous one keeps verifying for 24 hours."""
    async with session.begin():
        rotated = await rotate_source_secret(session, name=source, box=box, now=now)
    cache.forget(source)
    return rotated
