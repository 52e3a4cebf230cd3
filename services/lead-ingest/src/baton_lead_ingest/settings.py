"""lead-ingest settings."""

from pydantic import Field

from baton.settings import Settings


class IngestSettings(Settings):
    """lead-ingest's settings: the shared ones with its own port."""

    port: int = Field(8001, description="Port lead-ingest listens on.")
