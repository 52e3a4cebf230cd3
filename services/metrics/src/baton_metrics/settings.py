"""metrics settings."""

from pydantic import Field

from baton.settings import Settings


class MetricsSettings(Settings):
    """metrics' settings: the shared ones with its own port."""

    port: int = Field(8004, description="Port metrics listens on.")
