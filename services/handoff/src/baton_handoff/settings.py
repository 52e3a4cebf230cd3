"""handoff settings."""

from datetime import timedelta

from pydantic import Field

from baton.settings import Settings


class HandoffSettings(Settings):
    """handoff's settings: the shared ones with its port and default SLA."""

    port: int = Field(8003, description="Port handoff listens on.")
    accept_within: timedelta = Field(timedelta(hours=1), description="Default time a rep has to accept a lead.")
    touch_within: timedelta = Field(timedelta(hours=24), description="Default time a rep has to first touch a lead.")
