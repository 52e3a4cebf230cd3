"""scoring settings."""

from pydantic import Field

from baton.settings import Settings


class ScoringSettings(Settings):
    """scoring's settings: the shared ones, its port and the accept-rate target calibration aims at."""

    port: int = Field(8002, description="Port scoring listens on.")
    calibration_target_accept_rate: float = Field(
        0.7,
        gt=0,
        le=1,
        description="The share of MQLs sales should accept; GET /v1/calibration suggests a threshold for it.",
    )
    rescore_job_retention_days: float = Field(
        30.0, gt=0, description="How long a finished rescore stays readable at GET /v1/rescore/{job_id}."
    )
