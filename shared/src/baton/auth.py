"""Bearer tokens: signed JWTs that carry scopes and, for sales users, a rep or team."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from baton.events import new_id, utcnow

SCOPES = ("admin", "leads:write", "leads:read", "assignments:read", "assignments:write", "metrics:read")
ALGORITHM = "HS256"
ISSUER = "baton"
VERIFIED_TOKENS_KEPT = 1024


class InvalidToken(Exception):
    """The token is missing, malformed, expired or not signed by us."""


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do."""

    subject: str
    scopes: frozenset[str]
    rep_id: str | None = None
    team: str | None = None

    def allows(self, scope: str) -> bool:
        """Tells whether the token grants a scope; ``admin`` grants every scope.

        Args:
            scope: One of ``SCOPES``.

        Returns:
            True when allowed.
        """
        return "admin" in self.scopes or scope in self.scopes


def issue_token(
    secret: str,
    *,
    scopes: list[str] | tuple[str, ...],
    rep_id: str | None = None,
    team: str | None = None,
    subject: str | None = None,
    ttl: timedelta = timedelta(days=30),
) -> str:
    """Mints a signed token.

    Args:
        secret: The HMAC key the services verify with.
        scopes: Scopes from ``SCOPES``.
        rep_id: Limits the token to one rep's leads.
        team: Limits the token to one team's leads.
        subject: Who the token is for; a rep id, a team or a random id by default.
        ttl: How long the token is valid.

    Returns:
        The encoded JWT.

    Raises:
        ValueError: An unknown scope, or no scope at all.
    """
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    now = utcnow()
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": subject or rep_id or team or new_id(),
        "iat": now,
        "exp": now + ttl,
        "scope": " ".join(dict.fromkeys(scopes)),
    }
    if rep_id:
        claims["rep_id"] = rep_id
    if team:
        claims["team"] = team
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Principal:
    """Checks a token's signature, issuer and expiry.

    Args:
        secret: The HMAC key.
        token: The encoded JWT.

    Returns:
        The caller.

    Raises:
        InvalidToken: The token cannot be trusted.
    """
    return _verify(secret, token, now=time.time())[0]


def _verify(secret: str, token: str, *, now: float) -> tuple[Principal, float]:
    try:
        # Expiry is checked below against the caller's clock, the one TokenVerifier also uses.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub"], "verify_exp": False},
        )
        expires_at = float(claims["exp"])
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    except (TypeError, ValueError):
        raise InvalidToken("exp claim must be a number") from None
    if expires_at <= now:
        raise InvalidToken("Signature has expired")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("scope claim must be a string")
    principal = Principal(
        subject=str(claims["sub"]),
        scopes=frozenset(scope.split()),
        rep_id=claims.get("rep_id"),
        team=claims.get("team"),
    )
    return principal, expires_at


class TokenVerifier:
    """Verifies bearer tokens, remembering the most recently used valid ones until they expire.

    A sales tool sends the same token with every request; checking it once instead of on every
    request takes the JWT decoding off the request path.
    """

    def __init__(
        self, secret: str, *, capacity: int = VERIFIED_TOKENS_KEPT, clock: Callable[[], float] = time.time
    ) -> None:
        """Creates an empty verifier.

        Args:
            secret: The HMAC key.
            capacity: How many verified tokens are remembered; the least recently used goes first.
            clock: Unix time now, compared with each remembered token's ``exp``.
        """
        self._secret = secret
        self._capacity = capacity
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verified)

    def verify(self, token: str) -> Principal:
        """Checks a token's signature, issuer and expiry, or finds it among those already checked.

        Args:
            token: The encoded JWT.

        Returns:
            The caller.

        Raises:
            InvalidToken: The token cannot be trusted.
        """
        now = self._clock()
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, expires_at = remembered
            if now < expires_at:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires_at = _verify(self._secret, token, now=now)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > self._capacity:
            self._verified.popitem(last=False)
        return principal
