"""Bearer tokens: what a token carries, and which tokens are refused."""

from __future__ import annotations

import secrets
from datetime import timedelta

import jwt
import pytest

from baton.auth import SCOPES, InvalidToken, issue_token, verify_token

SECRET = secrets.token_urlsafe(48)


def test_verified_token_keeps_scopes_rep_and_team() -> None:
    token = issue_token(SECRET, scopes=["assignments:read", "assignments:write"], rep_id="rep-7", team="emea")

    principal = verify_token(SECRET, token)

    assert principal.scopes == {"assignments:read", "assignments:write"}
    assert principal.rep_id == "rep-7"
    assert principal.team == "emea"
    assert principal.subject == "rep-7"


def test_token_without_rep_or_team_carries_neither() -> None:
    principal = verify_token(SECRET, issue_token(SECRET, scopes=["metrics:read"]))

    assert principal.rep_id is None
    assert principal.team is None
    assert principal.subject


@pytest.mark.parametrize("scope", SCOPES)
def test_admin_token_allows_every_scope(scope: str) -> None:
    principal = verify_token(SECRET, issue_token(SECRET, scopes=["admin"]))

    assert principal.allows(scope)


def test_token_lacks_the_scopes_it_was_not_given() -> None:
    principal = verify_token(SECRET, issue_token(SECRET, scopes=["leads:write"]))

    assert principal.allows("leads:write")
    assert not principal.allows("admin")
    assert not principal.allows("assignments:read")
    assert not principal.allows("metrics:read")


def test_token_signed_with_another_secret_is_invalid() -> None:
    token = issue_token(secrets.token_urlsafe(48), scopes=["admin"])

    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


def test_expired_token_is_invalid() -> None:
    token = issue_token(SECRET, scopes=["admin"], ttl=timedelta(seconds=-1))

    with pytest.raises(InvalidToken, match="expired"):
        verify_token(SECRET, token)


@pytest.mark.parametrize("garbage", ["", "not-a-token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."])
def test_garbage_token_is_invalid(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(SECRET, garbage)


def test_unsigned_token_is_invalid() -> None:
    token = jwt.encode({"iss": "baton", "sub": "mallory", "exp": 4102444800, "scope": "admin"}, None, algorithm="none")

    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


def test_token_from_another_issuer_is_invalid() -> None:
    token = jwt.encode({"iss": "elsewhere", "sub": "x", "exp": 4102444800, "scope": "admin"}, SECRET, algorithm="HS256")

    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


@pytest.mark.parametrize("scopes", [["leads:delete"], ["admin", "superuser"], []])
def test_issuing_unknown_or_no_scopes_is_refused(scopes: list[str]) -> None:
    with pytest.raises(ValueError, match="scopes must be"):
        issue_token(SECRET, scopes=scopes)
