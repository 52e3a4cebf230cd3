"""How a webhook proves it comes from its source, free of I/O: one check per ``verification`` method.

Every check takes the source's secrets — the current one and, for 24 hours after a rotation, the
previous one — and accepts a request that any of them signs. Secrets and signatures are compared in
constant time and never appear in a refusal's reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as random_secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from baton.errors import Unauthorized

VerificationMethod = Literal["standard-webhooks", "typeform", "meta", "url-token"]
VERIFICATION_METHODS: tuple[VerificationMethod, ...] = get_args(VerificationMethod)
DEFAULT_VERIFICATION: VerificationMethod = "standard-webhooks"

TIMESTAMP_TOLERANCE = timedelta(minutes=5)
"""How far a ``webhook-timestamp`` may be from now, either way, before the request counts as a replay."""

STANDARD_WEBHOOKS_SECRET_PREFIX = "whsec_"
SECRET_RANDOM_BYTES = 32

HASHABLE_METHODS: frozenset[VerificationMethod] = frozenset({"url-token"})
"""Methods whose secret may be stored as its fingerprint alone.

``url-token`` only compares the presented token with the secret, so the fingerprint suffices.
``standard-webhooks``, ``typeform`` and ``meta`` compute an HMAC keyed with the secret itself, so
those secrets must be kept recoverable — encrypted at rest, not hashed.
"""


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that proved its origin; ``webhook_id`` is the sender's delivery id when the method carries one."""

    webhook_id: str | None


class VerificationFailed(Unauthorized):
    """A request that does not prove it comes from its source; ``reason`` is safe to log and to answer."""

    title = "Webhook verification failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify(
    method: VerificationMethod,
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
) -> Verified:
    """Checks that a webhook request comes from its source by the source's ``verification`` method.

    Args:
        method: the source's verification method, one of ``VERIFICATION_METHODS``.
        headers: the request headers; names are matched case-insensitively.
        query: the request's query parameters.
        body: the raw body exactly as received; every signature covers these bytes.
        secrets: the source's current secret and, during the 24 hours after a rotation, the previous one.
        now: the current time (timezone-aware), against which ``webhook-timestamp`` is checked.

    Returns:
        ``Verified`` with the ``webhook-id`` for ``standard-webhooks``, ``None`` for the other methods.

    Raises:
        VerificationFailed: the request is unsigned, mis-signed, stale or carries a wrong token.
        ValueError: ``method`` is not a verification method.
    """
    if method not in VERIFICATION_METHODS:
        raise ValueError(f"unknown verification method {method!r}")
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise VerificationFailed("the source has no secret to verify with")
    lowered = {name.lower(): value for name, value in headers.items()}
    if method == "standard-webhooks":
        return _verify_standard_webhooks(lowered, body, usable, now)
    if method == "typeform":
        _verify_typeform(lowered, body, usable)
        return Verified(webhook_id=None)
    if method == "meta":
        _verify_meta(lowered, body, usable)
        return Verified(webhook_id=None)
    _verify_url_token(query, usable)
    return Verified(webhook_id=None)


def verify_meta_handshake(query: Mapping[str, str], secrets: Sequence[str]) -> str | None:
    """Returns the challenge to answer Meta's subscription handshake with, or ``None`` when it is not ours."""
    challenge = query.get("hub.challenge")
    token = query.get("hub.verify_token")
    if query.get("hub.mode") != "subscribe" or not challenge or not token:
        return None
    return challenge if _matches_any_secret(token, secrets) else None


def new_source_secret(method: VerificationMethod) -> str:
    """Returns a fresh secret in the form the method expects: ``whsec_<base64 key>`` or a URL-safe token."""
    if method == "standard-webhooks":
        key = random_secrets.token_bytes(SECRET_RANDOM_BYTES)
        return STANDARD_WEBHOOKS_SECRET_PREFIX + base64.b64encode(key).decode("ascii")
    if method in VERIFICATION_METHODS:
        return random_secrets.token_urlsafe(SECRET_RANDOM_BYTES)
    raise ValueError(f"unknown verification method {method!r}")


def secret_fingerprint(secret: str) -> str:
    """Returns a one-way fingerprint of a secret, enough to store a ``url-token`` secret (see ``HASHABLE_METHODS``).

    Secrets are 32 random bytes, so an unsalted SHA-256 cannot be reversed by guessing.
    """
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def url_token_matches_fingerprint(query: Mapping[str, str], fingerprints: Sequence[str]) -> bool:
    """Tells whether a request's ``?token=`` is the secret behind one of the stored fingerprints."""
    token = query.get("token")
    if not token:
        return False
    presented = secret_fingerprint(token).encode("ascii")
    return _any_equal(presented, [fingerprint.encode("utf-8") for fingerprint in fingerprints])


def _verify_standard_webhooks(
    headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: datetime
) -> Verified:
    """Checks the Standard Webhooks headers: an id, a fresh timestamp and a ``v1`` signature by one of the secrets."""
    webhook_id = _required_header(headers, "webhook-id")
    timestamp = _fresh_timestamp(_required_header(headers, "webhook-timestamp"), now)
    signatures = _v1_signatures(_required_header(headers, "webhook-signature"))
    if not signatures:
        raise VerificationFailed("webhook-signature carries no v1 signature")
    try:
        # The library signs text; a body that is not UTF-8 cannot have been signed by a conforming sender.
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise VerificationFailed("the body is not UTF-8") from None
    expected = [_standard_webhooks_signature(secret, webhook_id, timestamp, payload) for secret in secrets]
    if not any(_any_equal(signature, expected) for signature in signatures):
        raise VerificationFailed("no webhook-signature matches the body")
    return Verified(webhook_id=webhook_id)


def _standard_webhooks_signature(secret: str, webhook_id: str, timestamp: datetime, payload: str) -> bytes:
    """Returns the raw ``v1`` HMAC of a message under a ``whsec_`` secret, as the ``standardwebhooks`` library signs."""
    try:
        signer = Webhook(secret)
    except (binascii.Error, EmptyWebhookSecretError) as exc:
        # A malformed stored secret is the operator's fault, not the sender's: fail loudly.
        raise ValueError("a standard-webhooks secret must be whsec_ followed by a base64 key") from exc
    versioned = signer.sign(msg_id=webhook_id, timestamp=timestamp, data=payload)
    return base64.b64decode(versioned.partition(",")[2])


def _fresh_timestamp(header: str, now: datetime) -> datetime:
    """Returns ``webhook-timestamp`` as a time, refusing one that is not whole seconds or is too far from now."""
    if not header.isascii() or not header.isdigit():
        raise VerificationFailed("webhook-timestamp is not unix seconds")
    try:
        timestamp = datetime.fromtimestamp(int(header), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise VerificationFailed("webhook-timestamp is not unix seconds") from None
    if abs(timestamp - now) > TIMESTAMP_TOLERANCE:
        raise VerificationFailed("webhook-timestamp is more than 5 minutes from now")
    return timestamp


def _v1_signatures(header: str) -> list[bytes]:
    """Returns the decoded ``v1`` signatures of a ``webhook-signature`` header, skipping other versions and garbage."""
    signatures = []
    for versioned in header.split():
        version, _, encoded = versioned.partition(",")
        if version != "v1":
            continue
        decoded = _b64decode(encoded)
        if decoded is not None:
            signatures.append(decoded)
    return signatures


def _verify_typeform(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """Checks ``Typeform-Signature: sha256=<base64 HMAC-SHA256(secret, body)>``."""
    encoded = _prefixed(_required_header(headers, "typeform-signature"), "typeform-signature")
    presented = _b64decode(encoded)
    if presented is None:
        raise VerificationFailed("typeform-signature is not base64")
    if not _any_equal(presented, [_hmac_sha256(secret, body) for secret in secrets]):
        raise VerificationFailed("typeform-signature does not match the body")


def _verify_meta(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> None:
    """Checks ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``."""
    encoded = _prefixed(_required_header(headers, "x-hub-signature-256"), "x-hub-signature-256")
    try:
        presented = bytes.fromhex(encoded)
    except ValueError:
        raise VerificationFailed("x-hub-signature-256 is not hex") from None
    if not _any_equal(presented, [_hmac_sha256(secret, body) for secret in secrets]):
        raise VerificationFailed("x-hub-signature-256 does not match the body")


def _verify_url_token(query: Mapping[str, str], secrets: Sequence[str]) -> None:
    """Checks that the webhook URL carries one of the source's secrets as ``?token=``."""
    token = query.get("token")
    if not token:
        raise VerificationFailed("the token query parameter is missing")
    if not _matches_any_secret(token, secrets):
        raise VerificationFailed("the token does not match the source")


def _required_header(headers: Mapping[str, str], name: str) -> str:
    """Returns a header's value, refusing the request when it is absent or empty."""
    value = headers.get(name, "").strip()
    if not value:
        raise VerificationFailed(f"the {name} header is missing")
    return value


def _prefixed(value: str, header: str) -> str:
    """Returns what follows ``sha256=`` in a signature header."""
    algorithm, separator, signature = value.partition("=")
    if not separator or algorithm.strip().lower() != "sha256":
        raise VerificationFailed(f"{header} is not a sha256= signature")
    return signature.strip()


def _hmac_sha256(secret: str, body: bytes) -> bytes:
    """Returns HMAC-SHA256 of the body keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def _b64decode(encoded: str) -> bytes | None:
    """Returns strictly decoded base64, or ``None`` for anything else."""
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _matches_any_secret(token: str, secrets: Sequence[str]) -> bool:
    """Tells whether a presented token equals one of the secrets, in time independent of where they differ."""
    # Digests first: compare_digest still reveals a length mismatch, and a digest has no secret length to reveal.
    presented = hashlib.sha256(token.encode("utf-8")).digest()
    return _any_equal(presented, [hashlib.sha256(s.encode("utf-8")).digest() for s in secrets if s])


def _any_equal(presented: bytes, candidates: Sequence[bytes]) -> bool:
    """Tells whether ``presented`` equals any candidate, comparing each one in constant time."""
    matched = False
    for candidate in candidates:
        # No short cut: every candidate is compared, so timing does not tell which secret matched.
        matched |= hmac.compare_digest(presented, candidate)
    return matched
