"""lead-ingest's request and response bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from baton.events import Timestamp
from baton_lead_ingest.domain import (
    MAX_ACTIVITIES,
    MAX_ACTIVITY_TYPE_LENGTH,
    MAX_BATCH_LEADS,
    MAX_PROPERTIES_BYTES,
    MAX_PROPERTIES_DEPTH,
    MAX_UTM_KEY_LENGTH,
    MAX_UTM_KEYS,
    MAX_UTM_VALUE_LENGTH,
    json_depth_exceeds,
    json_size,
)
from baton_lead_ingest.normalise import (
    MAX_COMPANY_SIZE,
    InvalidLeadValue,
    clean_phone,
    normalise_company_size,
    normalise_country,
    normalise_email,
    phone_in_e164,
)

Posted = TypeVar("Posted")
Normal = TypeVar("Normal")


def _without_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; refusing it here keeps it a 422 instead of a failed write.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_without_nul)]
UtmKey = Annotated[Text, StringConstraints(min_length=1, max_length=MAX_UTM_KEY_LENGTH)]
UtmValue = Annotated[Text, StringConstraints(max_length=MAX_UTM_VALUE_LENGTH)]


def _shallow_enough(value: Any) -> Any:
    # Before the JSON types are checked, so that deep nesting is one clear error, not a recursion one.
    if json_depth_exceeds(value, MAX_PROPERTIES_DEPTH):
        raise ValueError(f"nests deeper than {MAX_PROPERTIES_DEPTH} levels")
    return value


def _holds_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _small_enough(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    # PostgreSQL's text cannot hold U+0000, so the services downstream could not keep it either.
    if _holds_nul(value):
        raise ValueError("must not contain NUL characters")
    try:
        size = json_size(value)
    except ValueError:
        raise ValueError("holds NaN or an infinity, which JSON cannot carry") from None
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"is {size} bytes of JSON; at most {MAX_PROPERTIES_BYTES} are kept")
    return value


Properties = Annotated[
    dict[str, JsonValue],
    BeforeValidator(_shallow_enough),
    AfterValidator(_small_enough),
    Field(
        description=(
            f"Anything the source knows about it: at most {MAX_PROPERTIES_BYTES} bytes of JSON, "
            f"nested at most {MAX_PROPERTIES_DEPTH} deep."
        ),
    ),
]


class ActivityIn(BaseModel):
    """One engagement posted with a lead: a form fill, an e-mail click, a demo request."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: Text = Field(min_length=1, max_length=MAX_ACTIVITY_TYPE_LENGTH, examples=["demo_request"])
    occurred_at: Timestamp | None = Field(None, description="With its offset, e.g. 2024-05-01T12:30:00Z.")
    properties: Properties = Field(default_factory=dict)


def _field_rule(rule: Callable[[Posted], Normal]) -> Callable[[Posted], Normal]:
    """Makes a normalisation rule's refusal a validation error of its field, worded by the rule, never echoing it."""

    def validated(value: Posted) -> Normal:
        try:
            return rule(value)
        except InvalidLeadValue as refused:
            raise PydanticCustomError("value_error", refused.message) from None

    return validated


def _phone_or_blank(text: str) -> str | None:
    # A form's unanswered phone field arrives blank: absent, like a blank country or company size.
    return clean_phone(text) if text else None


Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_field_rule(normalise_email))]
Country = Annotated[str, StringConstraints(max_length=64), AfterValidator(_field_rule(normalise_country))]
Phone = Annotated[Text, StringConstraints(max_length=64), AfterValidator(_field_rule(_phone_or_blank))]
CompanySize = Annotated[
    int | None,
    BeforeValidator(_field_rule(normalise_company_size)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_COMPANY_SIZE},
                {"type": "string", "examples": ["250", "1,000", "51-200", "1000+", "201-500 employees"]},
                {"type": "null"},
            ],
            "description": "A head count, or text such as `51-200` (held as its lower bound) or `1000+`.",
        }
    ),
]


class LeadIn(BaseModel):
    """The canonical lead; only ``email`` is required.

    Validating one also normalises it: ``email`` becomes the dedupe key (``normalise.normalise_email``), and it
    is the address held and published; ``country`` its alpha-2 code, ``phone`` E.164 where possible and
    ``company_size`` a head count. A normalised lead validates to itself.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email = Field(
        examples=["jane.doe@example.com"],
        description=(
            "Validated in syntax (no DNS look-up) and lower-cased whole, the domain in Unicode: the address "
            "held, which identifies the person, so one address in any case is one lead."
        ),
    )
    first_name: Text | None = Field(None, max_length=200)
    last_name: Text | None = Field(None, max_length=200)
    company: Text | None = Field(None, max_length=300)
    title: Text | None = Field(None, max_length=300)
    phone: Phone | None = Field(
        None,
        description=(
            "Held in E.164 when it is a valid number (a national one read in the lead's `country`), "
            "else as written without control characters."
        ),
    )
    country: Country | None = Field(
        None, description="An ISO 3166 code or a country's English name; held as its ISO 3166 alpha-2 code."
    )
    company_size: CompanySize = None
    industry: Text | None = Field(None, max_length=200)
    source: Text | None = Field(None, max_length=200)
    campaign: Text | None = Field(None, max_length=200)
    utm: dict[UtmKey, UtmValue] = Field(default_factory=dict, max_length=MAX_UTM_KEYS)
    activities: list[ActivityIn] = Field(default_factory=list, max_length=MAX_ACTIVITIES)
    external_id: Text | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _phone_read_in_the_leads_country(self) -> Self:
        # After the fields, so that a national number is read in the lead's country as normalised.
        if self.phone is not None:
            self.phone = phone_in_e164(self.phone, country=self.country)
        return self


class LeadBatchIn(BaseModel):
    """Up to 1,000 canonical leads; each is validated on its own, so a bad one does not sink the others."""

    model_config = ConfigDict(extra="forbid")

    leads: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH_LEADS,
        json_schema_extra={"items": {"$ref": "#/components/schemas/LeadIn"}},
    )


class LeadAccepted(BaseModel):
    """What intake answers: the lead's id and whether it merged into a known lead."""

    lead_id: str
    status: Literal["received"] = "received"
    duplicate: bool


class FieldError(BaseModel):
    """One reason a lead failed validation; ``loc`` is the path to the field within the lead."""

    loc: list[str | int]
    msg: str
    type: str


class BatchItemAnswer(BaseModel):
    """The answer for one lead of a batch, by its position: 202 with its lead, or 422 with what is wrong."""

    index: int
    status: Literal[202, 422]
    lead_id: str | None = Field(None, description="With 202: the lead this item is (a new one, or a known one).")
    duplicate: bool | None = Field(None, description="With 202: the item merged into a known lead.")
    errors: list[FieldError] | None = Field(None, description="With 422: the failing fields.")


class BatchAnswer(BaseModel):
    """One answer per posted lead, in the order posted."""

    items: list[BatchItemAnswer]


ActivityType = Annotated[
    Text,
    StringConstraints(min_length=1, max_length=MAX_ACTIVITY_TYPE_LENGTH, pattern=r"^[a-z0-9]+(?:[_.-][a-z0-9]+)*$"),
]


class ActivityPost(BaseModel):
    """An engagement of a known lead, found by ``lead_id`` or by ``email`` (exactly one of them)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    lead_id: Text | None = Field(None, min_length=1, max_length=64, description="The lead's id; or give `email`.")
    email: Email | None = Field(None, description="The lead's e-mail address, in any case; or give `lead_id`.")
    type: ActivityType = Field(
        description="A slug: lower-case letters and digits, joined by `_`, `-` or `.`.", examples=["demo_request"]
    )
    occurred_at: Timestamp = Field(description="With its offset, e.g. 2024-05-01T12:30:00Z; not in the future.")
    properties: Properties = Field(default_factory=dict)


class ActivityAccepted(BaseModel):
    """What activity intake answers: the lead the activity was recorded for."""

    lead_id: str
    status: Literal["accepted"] = "accepted"


class LeadOut(BaseModel):
    """A lead as Baton holds it: its canonical fields, where it came from, and when it was first and last posted."""

    lead_id: str
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    phone: str | None
    country: str | None
    company_size: int | None
    industry: str | None
    source: str | None
    campaign: str | None
    utm: dict[str, str]
    external_id: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
