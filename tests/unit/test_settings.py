"""Settings: BATON_* variables, database URLs and the token signing secret."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from baton.settings import Settings
from baton_handoff.settings import HandoffSettings


def test_baton_prefixed_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BATON_BUS", "kafka")
    monkeypatch.setenv("BATON_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("BATON_PORT", "9100")
    monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BATON_CONSUMER_MAX_ATTEMPTS", "7")

    settings = Settings()

    assert settings.bus == "kafka"
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.port == 9100
    assert settings.data_dir == tmp_path
    assert settings.consumer_max_attempts == 7


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9100")

    assert Settings().port == 8000


def test_service_settings_read_their_own_fields_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_ACCEPT_WITHIN", "PT15M")

    settings = HandoffSettings()

    assert settings.accept_within.total_seconds() == 15 * 60
    assert settings.port == 8003


def test_database_url_for_fills_in_service_and_data_dir() -> None:
    settings = Settings(data_dir=Path("/var/lib/baton"))

    assert settings.database_url_for("baton_handoff") == "sqlite+aiosqlite:////var/lib/baton/baton_handoff.db"


def test_database_url_for_fills_in_a_configured_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DATABASE_URL", "postgresql+asyncpg://baton@db:5432/{service}")

    assert Settings().database_url_for("baton_scoring") == "postgresql+asyncpg://baton@db:5432/baton_scoring"


@pytest.mark.parametrize(
    "jwt_secret",
    [None, "too-short-for-production", "changeme", "REPLACE_ME", ""],
    ids=["missing", "short", "placeholder", "placeholder-upper", "empty"],
)
def test_production_refuses_a_missing_short_or_placeholder_jwt_secret(
    monkeypatch: pytest.MonkeyPatch, jwt_secret: str | None
) -> None:
    monkeypatch.setenv("BATON_ENV", "production")
    if jwt_secret is not None:
        monkeypatch.setenv("BATON_JWT_SECRET", jwt_secret)

    with pytest.raises(ValidationError, match="BATON_JWT_SECRET"):
        Settings()


def test_production_accepts_a_long_random_jwt_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(30)
    assert len(secret) == 40
    monkeypatch.setenv("BATON_ENV", "production")
    monkeypatch.setenv("BATON_JWT_SECRET", secret)

    settings = Settings(data_dir=tmp_path)

    assert settings.signing_secret() == secret
    assert list(tmp_path.iterdir()) == [], "a configured secret must not be written to disk"


def test_development_signing_secret_is_created_once_under_data_dir_readable_only_by_its_owner(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)

    first = settings.signing_secret()

    secret_file = data_dir / "jwt-secret"
    assert secret_file.read_text().strip() == first
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert [p.name for p in data_dir.iterdir()] == ["jwt-secret"], "no temporary file may be left behind"


def test_development_signing_secret_is_the_same_on_every_call_and_for_every_instance(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).signing_secret()

    again = Settings(data_dir=tmp_path)

    assert again.signing_secret() == first
    assert again.signing_secret() == first


def test_development_signing_secret_differs_between_data_dirs(tmp_path: Path) -> None:
    one = Settings(data_dir=tmp_path / "one").signing_secret()
    other = Settings(data_dir=tmp_path / "other").signing_secret()

    assert one != other
