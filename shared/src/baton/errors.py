"""Domain exceptions; ``baton.web`` turns each into an RFC 9457 problem+json answer."""

from __future__ import annotations

from typing import Any


class BatonError(Exception):
    """Base of the errors a request can end with; ``status`` is the HTTP status it maps to."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotFound(BatonError):
    """The thing asked for does not exist, or the caller may not know it does."""

    status = 404
    title = "Not found"


class Conflict(BatonError):
    """The request contradicts the current state, e.g. an illegal status transition."""

    status = 409
    title = "Conflict"


class Unauthorized(BatonError):
    """No valid bearer token."""

    status = 401
    title = "Unauthorized"


class Forbidden(BatonError):
    """The token is valid but lacks the scope."""

    status = 403
    title = "Forbidden"


class Unprocessable(BatonError):
    """The request is well-formed but its data cannot be stored, e.g. a required value is missing."""

    status = 422
    title = "Unprocessable content"


class Unavailable(BatonError):
    """Something the service depends on, the database above all, cannot be reached; retrying later may work."""

    status = 503
    title = "Service unavailable"


class TooManyRequests(BatonError):
    """The caller went over a rate limit; ``retry_after`` is how many seconds until it may try again."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.retry_after = max(1, retry_after)
