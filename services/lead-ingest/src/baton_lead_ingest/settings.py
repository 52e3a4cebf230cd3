"""lead-ingest settings."""

from pydantic import Field, SecretStr

from baton.settings import Settings


class IngestSettings(Settings):
    """lead-ingest's settings: the shared ones with its own port and intake grouping."""

    port: int = Field(8001, description="Port lead-ingest listens on.")
    idempotency_retention_days: float = Field(
        7, gt=0, description="How long an Idempotency-Key's answer is kept and given again to a repeated request."
    )
    intake_group_max_leads: int = Field(
        2000,
        ge=1,
        description=(
            "Most leads stored in one transaction when concurrent requests are written together "
            "(a batch larger than this still goes in one)."
        ),
    )
    source_secret_key: SecretStr | None = Field(
        None,
        description=(
            "Key that encrypts webhook sources' secrets at rest (any string of 32+ characters); by default "
            "derived from the JWT secret, so changing that makes stored source secrets unreadable."
        ),
    )
    token_rate_limit_per_minute: int = Field(
        120_000, ge=1, description="Requests one bearer token may make to lead-ingest per minute before 429."
    )
    source_cache_seconds: float = Field(
        5.0,
        ge=0,
        description=(
            "How long a replica uses a webhook source's settings before reading them again; a change made through "
            "another replica applies within this time."
        ),
    )
