"""Webhook sources: their settings, their secrets (answered once, kept encrypted, rotated with a grace period)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.errors import Conflict, NotFound
from baton_lead_ingest.field_map import parse_field_map
from baton_lead_ingest.models import Source
from baton_lead_ingest.presets import PRESETS
from baton_lead_ingest.secret_box import SecretBox
from baton_lead_ingest.verification import DEFAULT_VERIFICATION, VerificationMethod, new_source_secret

PREVIOUS_SECRET_GRACE = timedelta(hours=24)
"""How long a rotated-out secret keeps verifying, so the sending tool can be switched over without a gap."""

MAX_RATE_LIMIT_PER_MINUTE = 100_000

SourceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")]


class SourceSettings(BaseModel):
    """What an admin sets on a source: how its payload maps to a lead and how its requests prove themselves."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(
        None, description=f"A vendor's payload shape: one of {', '.join(sorted(PRESETS))}.", examples=["typeform"]
    )
    field_map: dict[str, str] | None = Field(
        None,
        description=(
            "Canonical field (or `utm.<key>`) → path in the body: dots walk into objects, `[N]` indexes a list, "
            "`[key=value]` picks the first element whose `key` is `value`; overrides the preset for the fields it "
            "names."
        ),
        examples=[{"email": "fields[name=email].value", "company": "lead.company_name"}],
    )
    verification: VerificationMethod = Field(
        DEFAULT_VERIFICATION, description="How a request proves it comes from this source."
    )
    default_campaign: str | None = Field(None, max_length=200, description="The campaign of leads that name none.")
    rate_limit_per_minute: int | None = Field(
        None, ge=1, le=MAX_RATE_LIMIT_PER_MINUTE, description="Requests per minute before 429; none means no limit."
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str | None) -> str | None:
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset; known: {', '.join(sorted(PRESETS))}")
        return preset


class SourceIn(SourceSettings):
    """A new source: its name (a slug, part of its webhook URL) and its settings."""

    name: SourceName = Field(description="Lower-case letters, digits, `-` and `_`.", examples=["typeform-demo"])


class SourceUpdate(SourceSettings):
    """A source's new settings, all of them; ``name``, if given, must be the source's own."""

    name: SourceName | None = None


class SourceOut(BaseModel):
    """A source as configured, never with its secret."""

    name: str
    preset: str | None
    field_map: dict[str, str] | None
    verification: VerificationMethod
    default_campaign: str | None
    rate_limit_per_minute: int | None
    webhook_path: str = Field(description="Where the source posts its leads, on lead-ingest.")
    previous_secret_valid_until: AwareDatetime | None = Field(
        None, description="After a rotation, until when the previous secret still verifies."
    )
    created_at: AwareDatetime
    updated_at: AwareDatetime


class SourceWithSecret(SourceOut):
    """A source with its secret: answered on creation, on rotation and when a new method needs a new secret."""

    secret: str = Field(description="Shown this once; Baton keeps it encrypted and never answers it again.")


def _checked_field_map(field_map: dict[str, str] | None) -> None:
    """Refuses a field map with unknown canonical fields or bad paths (422 naming each)."""
    if field_map is not None:
        parse_field_map(field_map)


def source_out(source: Source, now: datetime) -> SourceOut:
    """A source as answered to an admin."""
    return SourceOut(**_out_fields(source, now))


def _out_fields(source: Source, now: datetime) -> dict[str, Any]:
    grace = source.previous_secret_until
    return {
        "name": source.name,
        "preset": source.preset,
        "field_map": source.field_map,
        "verification": source.verification,
        "default_campaign": source.default_campaign,
        "rate_limit_per_minute": source.rate_limit_per_minute,
        "webhook_path": f"/v1/sources/{source.name}/leads",
        "previous_secret_valid_until": grace if grace is not None and grace > now else None,
        "created_at": source.created_at,
        "updated_at": source.updated_at,
    }


def _with_secret(source: Source, secret: str, now: datetime) -> SourceWithSecret:
    return SourceWithSecret(**_out_fields(source, now), secret=secret)


async def create_source(session: AsyncSession, *, new: SourceIn, box: SecretBox, now: datetime) -> SourceWithSecret:
    """Creates a source with a fresh secret, answered this once.

    Raises:
        Conflict: A source has this name.
        Unprocessable: The field map is not valid.
    """
    _checked_field_map(new.field_map)
    secret = new_source_secret(new.verification)
    source = Source(
        name=new.name,
        **new.model_dump(exclude={"name"}),
        secret=box.seal(secret),
        created_at=now,
        updated_at=now,
    )
    session.add(source)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"a source named {new.name!r} exists already") from None
    return _with_secret(source, secret, now)


async def list_sources(session: AsyncSession, *, now: datetime) -> list[SourceOut]:
    """Every source, by name."""
    sources = await session.scalars(select(Source).order_by(Source.name))
    return [source_out(source, now) for source in sources]


async def find_source(session: AsyncSession, name: str, *, lock: bool = False) -> Source:
    """The source with this name.

    Raises:
        NotFound: No source has this name.
    """
    statement = select(Source).where(Source.name == name)
    source = await session.scalar(statement.with_for_update() if lock else statement)
    if source is None:
        raise NotFound(f"no source is named {name!r}")
    return source


def _rotate(source: Source, *, box: SecretBox, now: datetime) -> str:
    secret = new_source_secret(source.verification)  # type: ignore[arg-type]
    source.previous_secret = source.secret
    source.previous_secret_until = now + PREVIOUS_SECRET_GRACE
    source.secret = box.seal(secret)
    source.updated_at = now
    return secret


async def update_source(
    session: AsyncSession, *, name: str, update: SourceUpdate, box: SecretBox, now: datetime
) -> SourceOut | SourceWithSecret:
    """Replaces a source's settings; a new verification method gets a new secret, answered this once.

    Raises:
        NotFound: No source has this name.
        Conflict: The body names another source.
        Unprocessable: The field map is not valid.
    """
    if update.name is not None and update.name != name:
        raise Conflict(f"the body names source {update.name!r}, the path {name!r}; a source cannot be renamed")
    _checked_field_map(update.field_map)
    source = await find_source(session, name, lock=True)
    method_changed = update.verification != source.verification
    for field, value in update.model_dump(exclude={"name"}).items():
        setattr(source, field, value)
    source.updated_at = now
    if method_changed:
        return _with_secret(source, _rotate(source, box=box, now=now), now)
    return source_out(source, now)


async def rotate_source_secret(session: AsyncSession, *, name: str, box: SecretBox, now: datetime) -> SourceWithSecret:
    """Gives a source a new secret, answered this once; the previous one keeps verifying for 24 hours.

    Raises:
        NotFound: No source has this name.
    """
    source = await find_source(session, name, lock=True)
    return _with_secret(source, _rotate(source, box=box, now=now), now)


@dataclass(frozen=True)
class SourceConfig:
    """A source as its webhook route uses it: settings and secrets, decrypted, read at one moment."""

    name: str
    preset: str | None
    field_map: dict[str, str] | None
    verification: VerificationMethod
    default_campaign: str | None
    rate_limit_per_minute: int | None
    secrets: tuple[str, ...]
    previous_secret_until: datetime | None

    def verifying_secrets(self, now: datetime) -> list[str]:
        """The secrets a request may prove itself with at ``now``: the previous one only during its grace period."""
        current, *previous = self.secrets
        if previous and self.previous_secret_until is not None and now < self.previous_secret_until:
            return [current, *previous]
        return [current]


class SourceCache:
    """Sources' settings for the webhook route, read from the database at most every ``ttl_seconds`` per source.

    A change made through this replica applies at once (``forget``); one made through another replica applies
    within ``ttl_seconds``. An unknown name is not remembered, so a source created elsewhere is found at once.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._ttl = ttl_seconds
        self._clock = clock
        self._held: dict[str, tuple[float, SourceConfig]] = {}

    async def get(self, name: str) -> SourceConfig:
        """The source's settings and secrets.

        Raises:
            NotFound: No source has this name.
        """
        held = self._held.get(name)
        if held is not None and self._clock() < held[0]:
            return held[1]
        async with self._sessions() as session:
            source = await find_source(session, name)
        config = SourceConfig(
            name=source.name,
            preset=source.preset,
            field_map=source.field_map,
            verification=source.verification,  # type: ignore[arg-type]
            default_campaign=source.default_campaign,
            rate_limit_per_minute=source.rate_limit_per_minute,
            secrets=tuple(
                self._box.open(sealed) for sealed in (source.secret, source.previous_secret) if sealed is not None
            ),
            previous_secret_until=source.previous_secret_until,
        )
        self._held[name] = (self._clock() + self._ttl, config)
        return config

    def forget(self, name: str) -> None:
        """Drops what is held of a source, so that the next request reads its new settings."""
        self._held.pop(name, None)
