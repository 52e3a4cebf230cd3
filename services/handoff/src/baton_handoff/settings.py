"""handoff settings."""

from datetime import timedelta
from typing import Literal

from pydantic import Field

from baton.settings import Settings


class HandoffSettings(Settings):
    """handoff's settings: the shared ones with its port and default SLA."""

    port: int = Field(8003, description="Port handoff listens on.")
    accept_within: timedelta = Field(
        timedelta(hours=1), description="Time a rep has to accept a lead routed by the default rule (no rule matched)."
    )
    touch_within: timedelta = Field(
        timedelta(hours=24), description="Time a rep has to first touch a lead routed by the default rule."
    )
    sla_clock: Literal["business_hours", "wall_clock"] = Field(
        "business_hours",
        description="How the default rule's SLA counts: in the rep's working hours, or on the wall clock.",
    )
    sla_tick_seconds: float = Field(
        0.5, gt=0, le=60, description="How often the SLA scheduler looks for deadlines that have passed."
    )
    sla_batch_size: int = Field(100, ge=1, le=10_000, description="How many breaches one SLA tick acts on at most.")
    reject_reasons: list[str] = Field(
        ["not_a_fit", "bad_contact_data", "duplicate", "no_budget", "other"],
        min_length=1,
        description="The reasons sales may give for rejecting a lead (a JSON list); any other is refused.",
    )
    webhook_delivery_retention_days: int = Field(
        30, ge=1, le=3650, description="How long the log of finished webhook deliveries (delivered or failed) is kept."
    )
