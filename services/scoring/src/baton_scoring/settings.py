"""scoring settings."""

from pydantic import Field

from baton.settings import Settings


class ScoringSettings(Settings):
    """scoring's settings: the shared ones with its own port."""

    port: int = Field(8002, description="Port scoring listens on.")
