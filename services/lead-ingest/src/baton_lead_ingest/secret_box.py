"""Webhook sources' secrets at rest: encrypted with a key from the settings, readable only by lead-ingest."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from baton_lead_ingest.settings import IngestSettings

_KEY_PURPOSE = b"baton lead-ingest source secrets v1"


class SecretUnreadable(RuntimeError):
    """A stored secret was encrypted with another key: the key setting changed since the secret was made."""


class SecretBox:
    """Encrypts and decrypts source secrets (Fernet: AES-128-CBC with HMAC-SHA256) under one derived key."""

    def __init__(self, key_material: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_PURPOSE).derive(key_material.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> SecretBox:
        """The box keyed by ``source_secret_key``, or by the JWT secret when that is not set."""
        if settings.source_secret_key is not None:
            return cls(settings.source_secret_key.get_secret_value())
        return cls(settings.signing_secret())

    def seal(self, secret: str) -> str:
        """Returns the secret encrypted, as text fit for a column."""
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """Returns the secret a ``seal`` made.

        Raises:
            SecretUnreadable: It was sealed under another key.
        """
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise SecretUnreadable("a source secret cannot be decrypted: was source_secret_key changed?") from None
