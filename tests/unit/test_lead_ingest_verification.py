"""Webhook verification: each source method accepts what its sender signs and refuses everything else."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.errors import Unauthorized
from baton_lead_ingest.verification import (
    VERIFICATION_METHODS,
    VerificationFailed,
    VerificationMethod,
    Verified,
    new_source_secret,
    secret_fingerprint,
    url_token_matches_fingerprint,
    verify,
    verify_meta_handshake,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
BODY = b'{"email": "ada@example.com", "first_name": "Ada"}'
WEBHOOK_ID = "msg_2mD4v7Xq"
WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_WHSEC = "whsec_" + base64.b64encode(b"o" * 32).decode()
OTHER_WHSEC = "whsec_" + base64.b64encode(b"x" * 32).decode()
PLAIN_SECRET = "s3cr3t-token-abcdefghijklmnopqrstuvwxyz"
OLD_PLAIN_SECRET = "previous-token-abcdefghijklmnopqrstuvwx"

# The test vector of the Standard Webhooks reference implementation
# (github.com/standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py, test_sign_function).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def standard_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Signs as a Standard Webhooks sender does, independently of the code under test."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_headers(
    secret: str = WHSEC, *, at: datetime = NOW, body: bytes = BODY, webhook_id: str = WEBHOOK_ID
) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, webhook_id, timestamp, body),
    }


def verify_standard(
    headers: dict[str, str], *, body: bytes = BODY, secrets: tuple[str, ...] = (WHSEC,), now: datetime = NOW
) -> Verified:
    return verify("standard-webhooks", headers=headers, query={}, body=body, secrets=secrets, now=now)


def typeform_headers(secret: str = PLAIN_SECRET, body: bytes = BODY) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"Typeform-Signature": "sha256=" + base64.b64encode(digest).decode()}


def meta_headers(secret: str = PLAIN_SECRET, body: bytes = BODY) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def refusal(
    method: str,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: bytes = BODY,
    secrets: tuple[str, ...] = (PLAIN_SECRET,),
    now: datetime = NOW,
) -> str:
    """Returns the reason a request is refused, failing the test when it is accepted."""
    with pytest.raises(VerificationFailed) as refused:
        verify(
            method,  # type: ignore[arg-type]
            headers=headers or {},
            query=query or {},
            body=body,
            secrets=secrets,
            now=now,
        )
    return refused.value.reason


# standard-webhooks


def test_standard_webhooks_test_vector_from_the_spec_repository_verifies() -> None:
    headers = {
        "webhook-id": VECTOR_MSG_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    at = datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=UTC)

    verified = verify_standard(headers, body=VECTOR_PAYLOAD, secrets=(VECTOR_SECRET,), now=at)

    assert verified == Verified(webhook_id=VECTOR_MSG_ID)


def test_standard_webhooks_test_vector_with_one_bit_of_the_signature_changed_is_refused() -> None:
    # The reference suite's own "invalid signature": the vector's signature with its last character changed.
    headers = {
        "webhook-id": VECTOR_MSG_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
    }
    at = datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=UTC)

    reason = refusal("standard-webhooks", headers=headers, body=VECTOR_PAYLOAD, secrets=(VECTOR_SECRET,), now=at)

    assert reason == "no webhook-signature matches the body"


def test_standard_webhooks_signed_body_is_verified_with_its_webhook_id() -> None:
    assert verify_standard(standard_headers()) == Verified(webhook_id=WEBHOOK_ID)


def test_standard_webhooks_headers_are_matched_whatever_their_case() -> None:
    headers = {name.title(): value for name, value in standard_headers().items()}

    assert verify_standard(headers) == Verified(webhook_id=WEBHOOK_ID)


def test_standard_webhooks_tampered_body_is_refused() -> None:
    reason = refusal(
        "standard-webhooks", headers=standard_headers(), body=BODY.replace(b"Ada", b"Eve"), secrets=(WHSEC,)
    )

    assert reason == "no webhook-signature matches the body"


def test_standard_webhooks_changed_webhook_id_is_refused() -> None:
    headers = {**standard_headers(), "webhook-id": "msg_replayed"}

    assert refusal("standard-webhooks", headers=headers, secrets=(WHSEC,)) == "no webhook-signature matches the body"


def test_standard_webhooks_signature_by_another_secret_is_refused() -> None:
    reason = refusal("standard-webhooks", headers=standard_headers(OTHER_WHSEC), secrets=(WHSEC,))

    assert reason == "no webhook-signature matches the body"


def test_standard_webhooks_several_signatures_with_one_valid_are_accepted() -> None:
    valid = standard_headers()["webhook-signature"]
    wrong = standard_headers(OTHER_WHSEC)["webhook-signature"]
    headers = {**standard_headers(), "webhook-signature": f"{wrong} v2,{valid[3:]} garbage v1,!!! {valid} {wrong}"}

    assert verify_standard(headers) == Verified(webhook_id=WEBHOOK_ID)


def test_standard_webhooks_several_signatures_none_valid_are_refused() -> None:
    valid = standard_headers()["webhook-signature"]
    wrong = standard_headers(OTHER_WHSEC)["webhook-signature"]
    headers = {**standard_headers(), "webhook-signature": f"{wrong} v1a,{valid[3:]}"}

    assert refusal("standard-webhooks", headers=headers, secrets=(WHSEC,)) == "no webhook-signature matches the body"


def test_standard_webhooks_previous_secret_is_accepted_during_rotation() -> None:
    headers = standard_headers(OLD_WHSEC)

    assert verify_standard(headers, secrets=(WHSEC, OLD_WHSEC)) == Verified(webhook_id=WEBHOOK_ID)


def test_standard_webhooks_previous_secret_is_refused_once_the_caller_stops_passing_it() -> None:
    assert refusal("standard-webhooks", headers=standard_headers(OLD_WHSEC), secrets=(WHSEC,)) == (
        "no webhook-signature matches the body"
    )


@pytest.mark.parametrize("offset", [timedelta(minutes=-4), timedelta(minutes=4), timedelta(minutes=5)])
def test_standard_webhooks_timestamp_within_five_minutes_either_way_is_accepted(offset: timedelta) -> None:
    headers = standard_headers(at=NOW + offset)

    assert verify_standard(headers) == Verified(webhook_id=WEBHOOK_ID)


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6), timedelta(minutes=5, seconds=1)])
def test_standard_webhooks_timestamp_more_than_five_minutes_off_is_refused(offset: timedelta) -> None:
    reason = refusal("standard-webhooks", headers=standard_headers(at=NOW + offset), secrets=(WHSEC,))

    assert reason == "webhook-timestamp is more than 5 minutes from now"


@pytest.mark.parametrize("timestamp", ["soon", "1614265330.0", "-1614265330", "", "9" * 30, "１２３"])
def test_standard_webhooks_timestamp_that_is_not_unix_seconds_is_refused(timestamp: str) -> None:
    headers = {**standard_headers(), "webhook-timestamp": timestamp}

    reason = refusal("standard-webhooks", headers=headers, secrets=(WHSEC,))

    assert reason in {"webhook-timestamp is not unix seconds", "the webhook-timestamp header is missing"}


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_webhooks_missing_header_is_refused_and_named(missing: str) -> None:
    headers = {name: value for name, value in standard_headers().items() if name != missing}

    assert refusal("standard-webhooks", headers=headers, secrets=(WHSEC,)) == f"the {missing} header is missing"


def test_standard_webhooks_signature_header_without_v1_is_refused() -> None:
    headers = {**standard_headers(), "webhook-signature": "v1a,c2lnbmF0dXJl"}

    assert (
        refusal("standard-webhooks", headers=headers, secrets=(WHSEC,)) == "webhook-signature carries no v1 signature"
    )


def test_standard_webhooks_body_that_is_not_utf8_is_refused() -> None:
    body = b"\xff\xfe"

    reason = refusal("standard-webhooks", headers=standard_headers(body=body), body=body, secrets=(WHSEC,))

    assert reason == "the body is not UTF-8"


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=200).filter(lambda raw: raw != BODY))
def test_standard_webhooks_signature_of_one_body_never_verifies_another(body: bytes) -> None:
    with pytest.raises(VerificationFailed):
        verify_standard(standard_headers(), body=body)


# typeform, meta and url-token: a secret shared as it is


def signed_with(method: VerificationMethod, secret: str) -> tuple[dict[str, str], dict[str, str]]:
    """Returns the headers and query a sender using ``method`` attaches to ``BODY`` under ``secret``."""
    if method == "typeform":
        return typeform_headers(secret), {}
    if method == "meta":
        return meta_headers(secret), {}
    return {}, {"token": secret}


@pytest.mark.parametrize("method", ["typeform", "meta", "url-token"])
@pytest.mark.parametrize("secret", [PLAIN_SECRET, OLD_PLAIN_SECRET])
def test_plain_secret_methods_accept_the_current_and_during_rotation_the_previous_secret(
    method: VerificationMethod, secret: str
) -> None:
    headers, query = signed_with(method, secret)

    verified = verify(
        method, headers=headers, query=query, body=BODY, secrets=[PLAIN_SECRET, OLD_PLAIN_SECRET], now=NOW
    )

    assert verified == Verified(webhook_id=None)


@pytest.mark.parametrize("method", ["typeform", "meta", "url-token"])
def test_plain_secret_methods_refuse_the_previous_secret_once_the_caller_stops_passing_it(
    method: VerificationMethod,
) -> None:
    headers, query = signed_with(method, OLD_PLAIN_SECRET)

    with pytest.raises(VerificationFailed):
        verify(method, headers=headers, query=query, body=BODY, secrets=[PLAIN_SECRET], now=NOW)


# typeform


def test_typeform_tampered_body_is_refused() -> None:
    reason = refusal("typeform", headers=typeform_headers(), body=BODY + b" ")

    assert reason == "typeform-signature does not match the body"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "the typeform-signature header is missing"),
        ({"Typeform-Signature": ""}, "the typeform-signature header is missing"),
        ({"Typeform-Signature": "sha1=abc"}, "typeform-signature is not a sha256= signature"),
        ({"Typeform-Signature": "sha256=not base64!"}, "typeform-signature is not base64"),
    ],
)
def test_typeform_missing_or_malformed_signature_is_refused(headers: dict[str, str], reason: str) -> None:
    assert refusal("typeform", headers=headers) == reason


def test_typeform_hex_signature_is_refused() -> None:
    hex_signature = hmac.new(PLAIN_SECRET.encode(), BODY, hashlib.sha256).hexdigest()

    reason = refusal("typeform", headers={"Typeform-Signature": f"sha256={hex_signature}"})

    assert reason == "typeform-signature does not match the body"


# meta


def test_meta_upper_case_hex_signature_is_verified() -> None:
    headers = {"x-hub-signature-256": meta_headers()["X-Hub-Signature-256"].upper().replace("SHA256=", "sha256=")}

    assert verify("meta", headers=headers, query={}, body=BODY, secrets=[PLAIN_SECRET], now=NOW).webhook_id is None


def test_meta_tampered_body_is_refused() -> None:
    assert refusal("meta", headers=meta_headers(), body=b"{}") == "x-hub-signature-256 does not match the body"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "the x-hub-signature-256 header is missing"),
        ({"X-Hub-Signature": "sha1=abcd"}, "the x-hub-signature-256 header is missing"),
        ({"X-Hub-Signature-256": "abcd"}, "x-hub-signature-256 is not a sha256= signature"),
        ({"X-Hub-Signature-256": "sha256=zz"}, "x-hub-signature-256 is not hex"),
    ],
)
def test_meta_missing_or_malformed_signature_is_refused(headers: dict[str, str], reason: str) -> None:
    assert refusal("meta", headers=headers) == reason


def test_meta_handshake_with_the_right_token_answers_the_challenge() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": PLAIN_SECRET, "hub.challenge": "1158201444"}

    assert verify_meta_handshake(query, [PLAIN_SECRET]) == "1158201444"


def test_meta_handshake_with_the_previous_token_answers_during_rotation() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": OLD_PLAIN_SECRET, "hub.challenge": "42"}

    assert verify_meta_handshake(query, [PLAIN_SECRET, OLD_PLAIN_SECRET]) == "42"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.verify_token": PLAIN_SECRET[:-1], "hub.challenge": "42"},
        {"hub.mode": "unsubscribe", "hub.verify_token": PLAIN_SECRET, "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.verify_token": PLAIN_SECRET},
        {},
    ],
)
def test_meta_handshake_with_a_wrong_token_or_mode_answers_nothing(query: dict[str, str]) -> None:
    assert verify_meta_handshake(query, [PLAIN_SECRET]) is None


def test_meta_handshake_with_an_empty_token_never_matches_an_empty_secret() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"}

    assert verify_meta_handshake(query, [""]) is None


# url-token


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({}, "the token query parameter is missing"),
        ({"token": ""}, "the token query parameter is missing"),
        ({"token": "wrong"}, "the token does not match the source"),
        ({"token": PLAIN_SECRET + "x"}, "the token does not match the source"),
        ({"Token": PLAIN_SECRET}, "the token query parameter is missing"),
    ],
)
def test_url_token_missing_or_wrong_is_refused(query: dict[str, str], reason: str) -> None:
    assert refusal("url-token", query=query) == reason


def test_url_token_stored_as_a_fingerprint_still_matches_the_secret() -> None:
    fingerprints = [secret_fingerprint(PLAIN_SECRET)]

    assert url_token_matches_fingerprint({"token": PLAIN_SECRET}, fingerprints)
    assert not url_token_matches_fingerprint({"token": OLD_PLAIN_SECRET}, fingerprints)
    assert not url_token_matches_fingerprint({}, fingerprints)


def test_secret_fingerprint_does_not_contain_the_secret() -> None:
    fingerprint = secret_fingerprint(PLAIN_SECRET)

    assert PLAIN_SECRET not in fingerprint
    assert fingerprint == secret_fingerprint(PLAIN_SECRET) != secret_fingerprint(OLD_PLAIN_SECRET)


# every method


@pytest.mark.parametrize("method", VERIFICATION_METHODS)
def test_a_source_without_a_secret_refuses_everything(method: str) -> None:
    reason = refusal(method, query={"token": ""}, secrets=("",))

    assert reason == "the source has no secret to verify with"


def test_unknown_method_is_a_programming_error_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="unknown verification method"):
        verify("hmac-md5", headers={}, query={}, body=BODY, secrets=[PLAIN_SECRET], now=NOW)  # type: ignore[arg-type]


def test_a_refusal_is_a_401_whose_reason_never_holds_the_secret_or_the_signature() -> None:
    signature = typeform_headers(OTHER_WHSEC)["Typeform-Signature"]

    with pytest.raises(VerificationFailed) as refused:
        verify(
            "typeform", headers={"Typeform-Signature": signature}, query={}, body=BODY, secrets=[PLAIN_SECRET], now=NOW
        )

    assert isinstance(refused.value, Unauthorized)
    assert refused.value.status == 401
    assert PLAIN_SECRET not in str(refused.value)
    assert signature.removeprefix("sha256=") not in str(refused.value)


# secrets


def test_new_standard_webhooks_secret_is_whsec_and_32_random_bytes_that_sign_and_verify() -> None:
    secret = new_source_secret("standard-webhooks")

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert verify_standard(standard_headers(secret), secrets=(secret,)) == Verified(webhook_id=WEBHOOK_ID)


@pytest.mark.parametrize("method", ["typeform", "meta", "url-token"])
def test_new_secret_for_other_methods_is_a_url_safe_token(method: VerificationMethod) -> None:
    secret = new_source_secret(method)

    assert len(secret) >= 43
    assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("method", VERIFICATION_METHODS)
def test_new_secrets_differ_every_time(method: VerificationMethod) -> None:
    assert len({new_source_secret(method) for _ in range(20)}) == 20
