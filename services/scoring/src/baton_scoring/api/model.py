"""The scoring model as versioned data: read it, replace it with a new version, list and read old versions."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from baton.errors import Conflict, NotFound, Unprocessable
from baton.web import AdminDep, NowDep, SessionDep
from baton_scoring import accounts
from baton_scoring.model import InvalidModel, ScoringModel, parse_model, stored_model
from baton_scoring.models import ModelVersion
from baton_scoring.schemas import ModelOut, ModelVersionOut

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/model", tags=["model"])

ModelBody = Annotated[
    dict[str, Any],
    Body(
        description="A complete scoring model (see docs/scoring.md): fit_rules, grade_thresholds, engagement, "
        "engagement_cap, half_life_days, hand_raisers, free_mail_domains, mql_threshold, min_grade."
    ),
]


def _out(row: ModelVersion) -> ModelOut:
    return ModelOut(version=row.version, created_at=row.created_at, model=stored_model(row.definition))


@router.get("")
async def get_model(session: SessionDep, _: AdminDep) -> ModelOut:
    """The scoring model in force: the newest version."""
    newest = await session.scalar(select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1))
    if newest is None:
        raise NotFound("no scoring model yet")
    return _out(newest)


def proposed_model(definition: dict[str, Any]) -> ScoringModel:
    """A model sent to be put in force or simulated; one that cannot be used answers 422, naming the rule."""
    try:
        return parse_model(definition)
    except InvalidModel as invalid:
        raise Unprocessable(f"the scoring model is not valid: {invalid}", errors=invalid.errors) from None


@router.put("")
async def put_model(definition: ModelBody, session: SessionDep, now: NowDep, _: AdminDep) -> ModelOut:
    """Puts a new model in force as the next version; a model that cannot be used is refused, naming the rule."""
    model = proposed_model(definition)
    async with session.begin():
        newest = await session.scalar(select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1))
        row = ModelVersion(
            version=(newest.version if newest else 0) + 1, definition=model.model_dump(mode="json"), created_at=now
        )
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict("another model was put at the same moment; read it and try again") from None
        if newest is None or stored_model(newest.definition).half_life_days != model.half_life_days:
            # Accounts' sums decay with the half-life: summed afresh, with the new version, under the new one.
            await accounts.rebuild(session, model.half_life_days)
    # The audit line names the version and its shape, never who sent it nor anything about a lead.
    logger.info(
        "scoring model version put in force",
        extra={"model_version": row.version, "fit_rules": len(model.fit_rules), "mql_threshold": model.mql_threshold},
    )
    return ModelOut(version=row.version, created_at=row.created_at, model=model)


@router.get("/versions")
async def list_model_versions(session: SessionDep, _: AdminDep) -> list[ModelVersionOut]:
    """Every version of the model, newest first."""
    rows = await session.execute(
        select(ModelVersion.version, ModelVersion.created_at).order_by(ModelVersion.version.desc())
    )
    return [ModelVersionOut(version=version, created_at=created_at) for version, created_at in rows]


@router.get("/versions/{version}")
async def get_model_version(version: int, session: SessionDep, _: AdminDep) -> ModelOut:
    """One version of the model, as it was put in force."""
    row = await session.get(ModelVersion, version)
    if row is None:
        raise NotFound(f"no scoring model version {version}")
    return _out(row)
