"""Rescoring leads under the model in force, in the background: a job row per request, worked through in
lead-id order a chunk per transaction, so a restarted service carries on where the job stood.

A chunk's leads are scored as of the time their score is already as of (the last event applied), never
the clock, so a rescore under an unchanged model changes nothing. ``lead.scored`` goes out only for a
changed score; a lead already an MQL of its cycle is never qualified again, while a lead in nurture that
the new model qualifies becomes an MQL, as it would on its next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import begin_batch
from baton.events import new_id
from baton.runtime import ServiceRuntime
from baton.settings import Settings
from baton_scoring.consumers import apply_score, current_model
from baton_scoring.models import LeadScore, RescoreJob
from baton_scoring.settings import ScoringSettings

logger = logging.getLogger(__name__)

CHUNK = 200
"""Leads rescored per transaction."""
LEASE = timedelta(seconds=60)
"""How long a replica holds a job without progress before another may take it over."""
POLL_SECONDS = 2.0
"""How often a worker looks for jobs another replica was asked for."""

_WAKE: weakref.WeakKeyDictionary[ServiceRuntime, asyncio.Event] = weakref.WeakKeyDictionary()


def _wake_event(runtime: ServiceRuntime) -> asyncio.Event:
    return _WAKE.setdefault(runtime, asyncio.Event())


def wake(runtime: ServiceRuntime) -> None:
    """Tells this replica's worker that a job is waiting."""
    _wake_event(runtime).set()


def lead_filter(lead_filter: dict[str, Any]) -> ColumnElement[bool]:
    """The leads a job's filter selects: by id, source, campaign and when they were received."""
    conditions: list[ColumnElement[bool]] = []
    if lead_filter.get("lead_ids"):
        conditions.append(LeadScore.lead_id.in_(lead_filter["lead_ids"]))
    if lead_filter.get("source") is not None:
        conditions.append(LeadScore.source == lead_filter["source"])
    if lead_filter.get("campaign") is not None:
        conditions.append(LeadScore.campaign == lead_filter["campaign"])
    if lead_filter.get("received_from") is not None:
        conditions.append(LeadScore.received_at >= datetime.fromisoformat(lead_filter["received_from"]))
    if lead_filter.get("received_to") is not None:
        conditions.append(LeadScore.received_at < datetime.fromisoformat(lead_filter["received_to"]))
    return and_(true(), *conditions)


async def create_job(session: AsyncSession, *, lead_filter_json: dict[str, Any], now: datetime) -> RescoreJob:
    """Queues a rescore of the leads the filter selects; the caller commits."""
    version, _ = await current_model(session)
    total = await session.scalar(select(func.count()).select_from(LeadScore).where(lead_filter(lead_filter_json)))
    job = RescoreJob(
        id=new_id(),
        status="queued",
        lead_filter=lead_filter_json,
        model_version=version,
        total=total or 0,
        processed=0,
        changed=0,
        created_at=now,
    )
    session.add(job)
    return job


async def _claim(runtime: ServiceRuntime) -> str | None:
    """Takes a queued job, or one whose replica stopped renewing its lease; None when there is none."""
    now = runtime.clock()
    claimable = or_(
        RescoreJob.status == "queued",
        and_(RescoreJob.status == "running", or_(RescoreJob.lease_until.is_(None), RescoreJob.lease_until < now)),
    )
    async with runtime.sessions() as session, session.begin():
        job_id = await session.scalar(
            select(RescoreJob.id)
            .where(claimable)
            .order_by(RescoreJob.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job_id is None:
            return None
        claimed = await session.execute(
            update(RescoreJob)
            .where(RescoreJob.id == job_id, claimable)
            .values(status="running", lease_until=now + LEASE, started_at=func.coalesce(RescoreJob.started_at, now))
        )
        return job_id if getattr(claimed, "rowcount", 0) == 1 else None


async def run_chunk(runtime: ServiceRuntime, job_id: str) -> bool:
    """Rescores the job's next chunk of leads and records its progress, in one transaction; False once done."""
    now = runtime.clock()
    async with runtime.sessions() as session, session.begin():
        job = await session.get(RescoreJob, job_id, with_for_update=True)
        if job is None or job.status != "running":
            return False
        wanted = lead_filter(job.lead_filter)
        if job.after_lead_id is not None:
            wanted = and_(wanted, LeadScore.lead_id > job.after_lead_id)
        leads = (
            await session.scalars(
                select(LeadScore).where(wanted).order_by(LeadScore.lead_id).limit(CHUNK).with_for_update()
            )
        ).all()
        if not leads:
            job.status, job.finished_at, job.lease_until = "done", now, None
            logger.info(
                "rescore done",
                extra={"job_id": job.id, "processed": job.processed, "changed": job.changed},
            )
            return False
        begin_batch(session, (lead.lead_id for lead in leads))
        changed = 0
        for lead in leads:
            at = lead.scored_at
            changed += await apply_score(session, lead, at=at, cause="rescore")
        job.processed += len(leads)
        job.changed += changed
        job.after_lead_id = leads[-1].lead_id
        job.lease_until = now + LEASE
        return True


async def rescore_worker(runtime: ServiceRuntime) -> None:
    """Works through rescore jobs until the service stops: this replica's as soon as they are asked for,
    others' (or a crashed replica's) when it next looks."""
    wakeup = _wake_event(runtime)
    while True:
        job_id = await _claim(runtime)
        if job_id is None:
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await wakeup.wait()
            continue
        logger.info("rescore started", extra={"job_id": job_id})
        more = True
        while more:  # each chunk's transaction awaits the database, so requests and consumers get their turn
            more = await run_chunk(runtime, job_id)


async def forget_finished_rescores(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Deletes rescores finished longer ago than their retention; returns how many."""
    retention = settings if isinstance(settings, ScoringSettings) else ScoringSettings()
    result = await session.execute(
        delete(RescoreJob).where(
            RescoreJob.status == "done",
            RescoreJob.finished_at < now - timedelta(days=retention.rescore_job_retention_days),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
