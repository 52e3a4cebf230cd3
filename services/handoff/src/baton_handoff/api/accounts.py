"""/v1/accounts: e-mail domains whose leads go to an owning rep (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from baton.web import AdminDep, NowDep, Page, SessionDep
from baton_handoff import service
from baton_handoff.schemas import AccountIn, AccountOut, AccountPatch

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_account(body: AccountIn, session: SessionDep, now: NowDep, principal: AdminDep) -> AccountOut:
    """Adds an account; an existing domain answers 409, an owner who is not a rep 422."""
    async with session.begin():
        account = await service.create_account(session, account_in=body, principal=principal, now=now)
    return AccountOut.model_validate(account)


@router.get("")
async def list_accounts(
    session: SessionDep,
    _: AdminDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[AccountOut]:
    """Lists accounts by domain."""
    accounts = await service.list_accounts(session, after=cursor, limit=limit + 1)
    return Page.of(accounts, limit=limit, item=AccountOut.model_validate, cursor=lambda a: a.domain)


@router.get("/{domain}")
async def get_account(domain: str, session: SessionDep, _: AdminDep) -> AccountOut:
    """One account."""
    return AccountOut.model_validate(await service.get_account(session, domain=domain))


@router.patch("/{domain}")
async def update_account(
    domain: str, body: AccountPatch, session: SessionDep, now: NowDep, principal: AdminDep
) -> AccountOut:
    """Changes an account's name or owner."""
    async with session.begin():
        account = await service.update_account(session, domain=domain, patch=body, principal=principal, now=now)
    return AccountOut.model_validate(account)


@router.delete("/{domain}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_account(domain: str, session: SessionDep, now: NowDep, principal: AdminDep) -> Response:
    """Removes an account."""
    async with session.begin():
        await service.delete_account(session, domain=domain, principal=principal, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
