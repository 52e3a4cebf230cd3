"""Rescoring leads under the model in force, in the background, with its progress."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import AwareDatetime, BaseModel, Field

from baton.errors import NotFound
from baton.web import AdminDep, NowDep, RuntimeDep, SessionDep
from baton_scoring import rescore
from baton_scoring.models import RescoreJob

router = APIRouter(prefix="/v1/rescore", tags=["model"])


class RescoreRequest(BaseModel):
    """Which leads to rescore; all of them when nothing narrows it."""

    lead_ids: list[str] | None = Field(None, min_length=1, max_length=10_000)
    source: str | None = Field(None, max_length=100)
    campaign: str | None = Field(None, max_length=200)
    received_from: AwareDatetime | None = Field(None, description="Leads received at or after this time.")
    received_to: AwareDatetime | None = Field(None, description="Leads received before this time.")


class RescoreJobOut(BaseModel):
    """A rescore and how far it got."""

    job_id: str
    status: str = Field(description="queued, running or done.")
    lead_filter: dict[str, object]
    model_version: int = Field(description="The model in force when the rescore was asked for.")
    total: int = Field(description="Leads the filter selected when the rescore was asked for.")
    processed: int
    changed: int = Field(description="Leads whose score or grade changed (each published as lead.scored).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: RescoreJob) -> RescoreJobOut:
        """Builds the body from the job's row."""
        return cls(
            job_id=job.id,
            status=job.status,
            lead_filter=job.lead_filter,
            model_version=job.model_version,
            total=job.total,
            processed=job.processed,
            changed=job.changed,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


@router.post("", status_code=202)
async def start_rescore(
    request: RescoreRequest, session: SessionDep, now: NowDep, runtime: RuntimeDep, response: Response, _: AdminDep
) -> RescoreJobOut:
    """Rescores all or some leads under the model in force, in the background; follow it at the Location."""
    async with session.begin():
        job = await rescore.create_job(
            session, lead_filter_json=request.model_dump(mode="json", exclude_none=True), now=now
        )
    rescore.wake(runtime)
    response.headers["Location"] = f"/v1/rescore/{job.id}"
    return RescoreJobOut.of(job)


@router.get("/{job_id}")
async def get_rescore(job_id: str, session: SessionDep, _: AdminDep) -> RescoreJobOut:
    """A rescore's progress."""
    job = await session.get(RescoreJob, job_id)
    if job is None:
        raise NotFound(f"no rescore {job_id}")
    return RescoreJobOut.of(job)
