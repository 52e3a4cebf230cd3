"""Settings shared by every Baton service, read from ``BATON_*`` environment variables."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Configuration common to all services; each service subclasses it to set its own defaults."""

    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development",
        description="development allows generated secrets kept under data_dir; production demands real ones.",
    )
    data_dir: Path = Field(Path(".data"), description="Folder for SQLite files, the embedded log and dev secrets.")
    database_url: str = Field(
        "sqlite+aiosqlite:///{data_dir}/{service}.db",
        description="SQLAlchemy async URL; {service} becomes the service's database name, {data_dir} the data folder.",
    )
    bus: Literal["embedded", "kafka"] = Field(
        "embedded", description="Event transport: the embedded durable log in SQLite, or Apache Kafka."
    )
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated Kafka brokers.")
    kafka_topic_prefix: str = Field(
        "", description="Prepended to every topic and consumer group, to share one cluster between installations."
    )
    kafka_partitions: int = Field(3, ge=1, description="Partitions for topics Baton creates.")
    kafka_replication_factor: int = Field(
        3,
        ge=1,
        description="Replication factor for topics Baton creates; 1 only for a single-broker development cluster.",
    )
    kafka_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of topics Baton creates; by default 2, or 1 when the replication factor is 1.",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HMAC key that signs bearer tokens; generated under data_dir in development."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, description="Port the HTTP server binds.")
    log_level: str = Field("INFO", description="Python log level.")
    max_body_bytes: int = Field(
        1_048_576, ge=0, description="Largest request body accepted, in bytes; a bigger one is refused with 413."
    )
    consumer_max_attempts: int = Field(
        3,
        ge=1,
        description="Tries before an event whose failure repeats goes to its topic's .dlq; transient ones retry.",
    )
    consumer_batch_size: int = Field(
        500, ge=1, le=5000, description="Most events a consumer applies in one database transaction."
    )
    max_event_bytes: int = Field(
        512 * 1024,
        ge=1024,
        le=1_000_000,
        description="Largest event a service may produce (Kafka refuses messages over 1 MB by default).",
    )
    inbox_retention_days: float = Field(
        7, gt=0, description="How long consumers remember applied event ids; an older redelivery is applied again."
    )
    log_retention_days: float = Field(
        7, gt=0, description="How long the embedded log keeps events every group has read; DLQ topics are kept."
    )
    prune_interval_seconds: float = Field(600, gt=0, description="How often old inbox ids and log records are pruned.")

    @model_validator(mode="after")
    def _refuse_placeholder_secrets_in_production(self) -> Settings:
        if self.env == "production":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            # Placeholders such as "changeme" or "REPLACE_ME" are all shorter than this.
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"BATON_JWT_SECRET must be set to a random value of at least {MIN_SECRET_LENGTH} characters "
                    "in production"
                )
        return self

    @property
    def kafka_topic_min_insync_replicas(self) -> int:
        """The min.insync.replicas Baton sets on the topics it creates."""
        if self.kafka_min_insync_replicas is not None:
            return self.kafka_min_insync_replicas
        return min(2, self.kafka_replication_factor)

    @model_validator(mode="after")
    def _min_insync_within_replication(self) -> Settings:
        min_insync = self.kafka_min_insync_replicas
        if min_insync is not None and min_insync > self.kafka_replication_factor:
            raise ValueError("BATON_KAFKA_MIN_INSYNC_REPLICAS cannot exceed BATON_KAFKA_REPLICATION_FACTOR")
        return self

    def database_url_for(self, service_db: str) -> str:
        """Returns the database URL with ``{service}`` and ``{data_dir}`` filled in.

        Args:
            service_db: The service's database name, e.g. ``baton_handoff``.

        Returns:
            A SQLAlchemy async URL.
        """
        return self.database_url.replace("{service}", service_db).replace("{data_dir}", str(self.data_dir))

    def signing_secret(self) -> str:
        """Returns the token signing secret, creating a development one under data_dir when none is set.

        Returns:
            The HMAC key for bearer tokens.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            candidate = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            candidate.write_text(secrets.token_urlsafe(48))
            candidate.chmod(0o600)
            try:
                # link() fails if another process won the race; its secret is then the one to use.
                path.hardlink_to(candidate)
            except FileExistsError:
                pass
            finally:
                candidate.unlink()
        return path.read_text().strip()
