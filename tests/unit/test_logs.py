"""Structured logs: e-mail addresses masked, secrets and tokens never printed."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from baton.auth import issue_token
from baton.events import new_id
from baton.logs import JsonFormatter, configure_logging, mask


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing JSON lines to a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter("lead-ingest"))
    logger = logging.getLogger(f"baton.tests.{new_id()}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)


def _entries(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("jane@example.com", "j***@example.com"),
        ("lead from jane.doe+spring@mail.example.co.uk arrived", "lead from j***@mail.example.co.uk arrived"),
        ("two: a@x.io, bob@y.org", "two: a***@x.io, b***@y.org"),
    ],
)
def test_mask_keeps_first_character_and_domain_of_email_addresses(text: str, masked: str) -> None:
    assert mask(text) == masked


def test_mask_hides_bearer_tokens() -> None:
    assert mask("Authorization: Bearer abc123.DEF-456_x") == "Authorization: Bearer ***"


def test_mask_hides_jwts_anywhere() -> None:
    token = issue_token(secrets.token_urlsafe(48), scopes=["admin"])

    masked = mask(f"rejected token {token} at login")

    assert token not in masked
    assert masked == "rejected token *** at login"


def test_mask_leaves_ordinary_text_alone() -> None:
    assert mask("lead 42 scored 55 under model 3") == "lead 42 scored 55 under model 3"


def test_formatter_writes_one_json_object_with_time_level_service_logger_and_message(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_log

    logger.warning("lead %s scored %d", "lead-1", 55)

    [entry] = _entries(buffer)
    assert entry["level"] == "WARNING"
    assert entry["service"] == "lead-ingest"
    assert entry["logger"] == logger.name
    assert entry["message"] == "lead lead-1 scored 55"
    assert entry["time"].endswith("+00:00")


def test_formatter_masks_email_addresses_in_message_and_extra_fields(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = json_log

    logger.info("duplicate of jane@example.com merged", extra={"email": "bob@example.org", "attempt": 2})

    [entry] = _entries(buffer)
    assert entry["message"] == "duplicate of j***@example.com merged"
    assert entry["email"] == "b***@example.org"
    assert entry["attempt"] == 2
    assert "jane@" not in buffer.getvalue()
    assert "bob@" not in buffer.getvalue()


@pytest.mark.parametrize("key", ["client_secret", "password", "api_token", "Authorization", "webhook_signature"])
def test_formatter_replaces_values_of_secret_looking_extra_keys(
    json_log: tuple[logging.Logger, io.StringIO], key: str
) -> None:
    logger, buffer = json_log

    logger.info("calling out", extra={key: "s3cr3t-value"})

    [entry] = _entries(buffer)
    assert entry[key] == "***"
    assert "s3cr3t-value" not in buffer.getvalue()


def test_formatter_masks_email_addresses_in_exceptions(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log

    try:
        raise LookupError("no lead for jane@example.com")
    except LookupError:
        logger.exception("lookup failed")

    [entry] = _entries(buffer)
    assert "LookupError: no lead for j***@example.com" in entry["exception"]
    assert "jane@" not in buffer.getvalue()


def test_an_access_log_that_uvicorn_was_told_to_switch_off_stays_off() -> None:
    import uvicorn

    uvicorn.Config("tests.unit.test_logs:app", access_log=False).configure_logging()
    configure_logging("lead-ingest")

    access = logging.getLogger("uvicorn.access")
    assert not access.hasHandlers(), "uvicorn writes an access line for every request when the logger has a handler"


def test_outgoing_requests_are_not_logged_with_their_urls() -> None:
    # A webhook receiver's URL may carry the receiver's own token in its query.
    configure_logging("handoff")

    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
