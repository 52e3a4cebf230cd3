"""Rate limits per webhook source and per bearer token, counted in a sliding window by the ``limits`` library.

Counts live in the process: with several replicas behind a load balancer each replica allows the limit,
so a source's effective limit is the configured one times the replicas that receive its traffic.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from baton.auth import InvalidToken, TokenVerifier
from baton.errors import TooManyRequests
from baton_lead_ingest.settings import IngestSettings


class RateLimits:
    """Sliding-window counters per (kind, name), e.g. ``("source", "typeform-demo")`` or ``("token", subject)``."""

    def __init__(self) -> None:
        self._storage = MemoryStorage()
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._items: dict[int, RateLimitItemPerMinute] = {}

    async def hit(self, *, kind: str, name: str, per_minute: int) -> None:
        """Counts one request against a limit.

        Raises:
            TooManyRequests: The limit is used up; ``retry_after`` says when the window allows another.
        """
        item = self._items.get(per_minute)
        if item is None:
            item = self._items.setdefault(per_minute, RateLimitItemPerMinute(per_minute))
        if await self._limiter.hit(item, kind, name):
            return
        stats = await self._limiter.get_window_stats(item, kind, name)
        retry_after = math.ceil(stats.reset_time - time.time())
        raise TooManyRequests(
            f"the {kind} is over its limit of {per_minute} requests per minute; retry after {max(1, retry_after)} s",
            retry_after=retry_after,
        )


_bearer = HTTPBearer(auto_error=False)


async def limit_per_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Counts a request against its bearer token's limit (``token_rate_limit_per_minute``).

    A request without a valid token is not counted here: the route's own check refuses it with 401.

    Raises:
        TooManyRequests: The token is over its limit.
    """
    if credentials is None:
        return
    tokens: TokenVerifier = request.app.state.tokens
    try:
        principal = tokens.verify(credentials.credentials)
    except InvalidToken:
        return
    limits: RateLimits = request.app.state.rate_limits
    settings: IngestSettings = request.app.state.runtime.settings
    await limits.hit(kind="token", name=principal.subject, per_minute=settings.token_rate_limit_per_minute)


TokenRateLimit = Depends(limit_per_token)
"""A router dependency that holds each bearer token to lead-ingest's per-token rate limit."""
