"""The scoring model as data: fit rules, grades, engagement, hand-raisers and the MQL bar, validated.

How the service uses it (nothing here does I/O; docs/scoring.md is the operator's guide):

* Versions. ``model_versions`` keeps one row per version, ``definition`` holding
  ``ScoringModel.model_dump(mode="json")`` — always the complete model, every field written out, so a
  default added to this module later never changes what a stored version means. Version 1 is the legacy
  shape seeded by migration 0001; ``stored_model`` reads both shapes (``from_legacy`` converts the old one).
* ``PUT /v1/model`` calls ``parse_model(body)``; ``InvalidModel.errors`` are pydantic-style dicts
  (``loc``, ``msg`` naming the rule by name and index, ``type``) for the 422 problem's failing fields.
  A valid body is inserted as ``max(version) + 1`` — never an update — so old versions stay readable
  (``GET /v1/model/versions``) and every score names the version that made it.
* Migration 0003 inserts ``DEFAULT_MODEL_V2`` as version 2, written into the migration as a JSON literal
  (not imported from here), so that migration never changes afterwards even when this default does.
* ``consumers.py`` scores with ``engine.score`` at the time of the event being applied (``received_at``,
  the activity's ``occurred_at``), never the wall clock, and asks ``engine.qualifies`` for the MQL
  decision; the account's engagement comes from ``engine.account_domain`` and ``engine.engagement_of``
  over the leads sharing that domain. ``POST /v1/model:simulate`` and ``GET /v1/calibration`` call
  ``simulate.simulate`` and ``calibration.tally`` / ``calibration.suggest_threshold`` on rows read in one
  transaction, and write nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Final, Literal, TypedDict

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from baton.events import FitGrade

GRADES: Final[tuple[FitGrade, ...]] = ("A", "B", "C", "D")

TextAttribute = Literal["title", "company", "industry", "country", "source", "campaign", "email_domain"]
"""Lead attributes compared as text, case-insensitively. ``email_domain`` is the part of the e-mail after '@'."""
NumericAttribute = Literal["company_size", "account_engagement"]
"""Lead attributes compared as numbers. ``account_engagement`` is the summed engagement of the lead's account."""

MAX_PATTERN_LENGTH: Final = 200
"""The longest regular expression a rule may carry."""
MAX_MATCHED_TEXT: Final = 256
"""A regex rule looks at no more than this many leading characters of the attribute."""

RuleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ActivityType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Points = Annotated[int, Field(ge=-1000, le=1000)]
Number = Annotated[int | float, Field(allow_inf_nan=False)]

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")


def _domain(value: str) -> str:
    domain = value.strip().lower().removeprefix("@")
    if not _DOMAIN.match(domain):
        raise PydanticCustomError("domain", "'{value}' is not an e-mail domain like example.com", {"value": value})
    return domain


Domain = Annotated[str, Field(max_length=253), AfterValidator(_domain)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleName = Field(description="Unique within the model; names the rule in breakdowns and errors.")
    points: Points = Field(description="Fit points when the rule matches; negative points subtract.")
    disqualifies: bool = Field(False, description="A lead this rule matches never becomes an MQL.")
    group: RuleName | None = Field(
        None, description="Of the rules sharing a group, only the first that matches (in model order) counts."
    )


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return None


def _number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


class EqualsRule(_Rule):
    """The attribute equals a value, ignoring case and surrounding spaces."""

    op: Literal["eq"]
    attribute: TextAttribute
    value: Phrase

    def matches(self, value: object) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        text = _text(value)
        return text is not None and text.strip().casefold() == self.value.casefold()


class InRule(_Rule):
    """The attribute is one of the values, ignoring case and surrounding spaces."""

    op: Literal["in"]
    attribute: TextAttribute
    values: list[Phrase] = Field(min_length=1, max_length=1000)
    _folded: frozenset[str] = PrivateAttr(default_factory=frozenset)

    def model_post_init(self, context: Any, /) -> None:
        self._folded = frozenset(v.casefold() for v in self.values)

    def matches(self, value: object) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        text = _text(value)
        return text is not None and text.strip().casefold() in self._folded


class ContainsWordRule(_Rule):
    """The attribute contains one of the words or phrases as a whole word, ignoring case ("vp", "head of")."""

    op: Literal["contains_word"]
    attribute: TextAttribute
    words: list[Phrase] = Field(min_length=1, max_length=200)
    _compiled: re.Pattern[str] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        alternatives = "|".join(re.escape(word.casefold()) for word in self.words)
        self._compiled = re.compile(rf"\b(?:{alternatives})\b")

    def matches(self, value: object) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        text = _text(value)
        return text is not None and self._compiled.search(text.casefold()) is not None


class RegexRule(_Rule):
    """A regular expression found anywhere in the attribute, ignoring case; refused if it could backtrack badly."""

    op: Literal["regex"]
    attribute: TextAttribute
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN_LENGTH)
    _compiled: re.Pattern[str] = PrivateAttr()

    @field_validator("pattern")
    @classmethod
    def _safe_pattern(cls, pattern: str) -> str:
        problem = regex_problem(pattern)
        if problem is not None:
            raise PydanticCustomError("regex_refused", "{problem}", {"problem": problem})
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise PydanticCustomError(
                "regex_invalid", "not a valid regular expression: {error}", {"error": str(exc)}
            ) from exc
        return pattern

    def model_post_init(self, context: Any, /) -> None:
        self._compiled = re.compile(self.pattern, re.IGNORECASE)

    def matches(self, value: object) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        text = _text(value)
        return text is not None and self._compiled.search(text[:MAX_MATCHED_TEXT]) is not None


class RangeRule(_Rule):
    """A number within bounds, both inclusive; a missing bound is open."""

    op: Literal["range"]
    attribute: NumericAttribute
    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _bounds(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise PydanticCustomError("range_unbounded", "a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError(
                "range_inverted", "min ({min}) is greater than max ({max})", {"min": self.min, "max": self.max}
            )
        return self

    def matches(self, value: object) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        number = _number(value)
        if number is None:
            return False
        return (self.min is None or number >= self.min) and (self.max is None or number <= self.max)


class ComparisonRule(_Rule):
    """A number compared with a value: ``gte`` (≥), ``gt`` (>), ``lte`` (≤), ``lt`` (<)."""

    op: Literal["gte", "gt", "lte", "lt"]
    attribute: NumericAttribute
    value: Number

    def matches(self, value: object) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        number = _number(value)
        if number is None:
            return False
        match self.op:
            case "gte":
                return number >= self.value
            case "gt":
                return number > self.value
            case "lte":
                return number <= self.value
            case "lt":
                return number < self.value


class EmailDomainRule(_Rule):
    """The lead's e-mail domain is one of the domains, or a subdomain of one ("eu.rival.io" is in "rival.io")."""

    op: Literal["email_domain_in"]
    attribute: Literal["email_domain"] = "email_domain"
    domains: list[Domain] = Field(min_length=1, max_length=10_000)
    _listed: frozenset[str] = PrivateAttr(default_factory=frozenset)

    def model_post_init(self, context: Any, /) -> None:
        self._listed = frozenset(self.domains)

    def matches(self, value: object) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        text = _text(value)
        return text is not None and domain_in(text, self._listed)


def domain_in(domain: str, domains: Collection[str]) -> bool:
    """Tells whether a domain is one of the domains or a subdomain of one."""
    labels = domain.strip().lower().removeprefix("@").split(".")
    return any(".".join(labels[i:]) in domains for i in range(len(labels)))


FitRule = Annotated[
    EqualsRule | InRule | ContainsWordRule | RegexRule | RangeRule | ComparisonRule | EmailDomainRule,
    Field(discriminator="op"),
]
RULE_OPS: Final = frozenset(
    {"eq", "in", "contains_word", "regex", "range", "gte", "gt", "lte", "lt", "email_domain_in"}
)


class GradeThresholds(BaseModel):
    """The fewest fit points for grades A, B and C; below C is D."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    A: int
    B: int
    C: int

    @model_validator(mode="after")
    def _descending(self) -> GradeThresholds:
        if not self.A > self.B > self.C:
            raise PydanticCustomError(
                "grades_not_descending",
                "grade thresholds must descend, A > B > C; got A={a}, B={b}, C={c}",
                {"a": self.A, "b": self.B, "c": self.C},
            )
        return self

    def grade(self, fit_points: int) -> FitGrade:
        """Maps fit points to a grade: at or above a threshold earns that grade."""
        if fit_points >= self.A:
            return "A"
        if fit_points >= self.B:
            return "B"
        if fit_points >= self.C:
            return "C"
        return "D"


class EngagementRule(BaseModel):
    """Points for each activity of a type, decaying with age, and the most the type can add."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points: int = Field(ge=1, le=1000, description="Points for one activity of this type on the day it happened.")
    cap: int | None = Field(None, ge=1, description="The most this type adds, after decay; none means no cap.")


class ScoringModel(BaseModel):
    """Everything that decides a score: fit rules, grades, engagement, hand-raisers and the MQL bar."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fit_rules: list[FitRule] = Field(max_length=500, description="Tried in order; see each rule's group.")
    grade_thresholds: GradeThresholds
    engagement: dict[ActivityType, EngagementRule] = Field(description="Points and cap per activity type.")
    engagement_cap: int | None = Field(None, ge=1, description="The most all engagement adds together.")
    half_life_days: float = Field(gt=0, le=3650, allow_inf_nan=False, description="Engagement halves in this time.")
    hand_raisers: list[ActivityType] = Field(
        default_factory=list, description="Activity types that make a lead an MQL at once, whatever the score."
    )
    free_mail_domains: list[Domain] = Field(
        default_factory=list, description="Domains that name no company: their people form no account."
    )
    mql_threshold: int = Field(description="The fewest points (fit plus engagement) for an MQL.")
    min_grade: FitGrade = Field(description="The lowest fit grade that can become an MQL by its score.")

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ScoringModel:
        if isinstance(info.context, dict) and info.context.get(_COLLECT_CROSS_CHECKS):
            return self  # model_errors reports them one by one, each at its own loc
        problems = cross_check_errors(self)
        if problems:
            raise PydanticCustomError(
                "scoring_model_inconsistent", "{messages}", {"messages": "; ".join(p["msg"] for p in problems)}
            )
        return self


_COLLECT_CROSS_CHECKS: Final = "baton_scoring_collect_cross_checks"


class ModelError(TypedDict):
    """One reason a model is refused, shaped like a pydantic error for a 422."""

    loc: list[str | int]
    msg: str
    type: str


class InvalidModel(ValueError):
    """A scoring model that cannot be used; ``errors`` says why, each naming the bad rule."""

    def __init__(self, errors: list[ModelError]) -> None:
        super().__init__("; ".join(e["msg"] for e in errors))
        self.errors = errors


def cross_check_errors(model: ScoringModel) -> list[ModelError]:
    """What no single field can tell: rule names used twice, hand-raiser types listed twice."""
    errors: list[ModelError] = []
    first_use: dict[str, int] = {}
    for index, rule in enumerate(model.fit_rules):
        key = rule.name.casefold()
        if key in first_use:
            errors.append(
                {
                    "loc": ["fit_rules", index, "name"],
                    "msg": f"rule '{rule.name}' (fit_rules[{index}]): name already used by fit_rules[{first_use[key]}]",
                    "type": "rule_name_duplicate",
                }
            )
        else:
            first_use[key] = index
    seen: set[str] = set()
    for index, activity_type in enumerate(model.hand_raisers):
        if activity_type in seen:
            errors.append(
                {
                    "loc": ["hand_raisers", index],
                    "msg": f"hand-raiser '{activity_type}' (hand_raisers[{index}]) is listed twice",
                    "type": "hand_raiser_duplicate",
                }
            )
        seen.add(activity_type)
    return errors


def _rule_label(definition: object, index: int) -> str:
    rules = definition.get("fit_rules") if isinstance(definition, Mapping) else None
    if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], Mapping):
        name = rules[index].get("name")
        if isinstance(name, str) and name.strip():
            return f"rule '{name.strip()}' (fit_rules[{index}])"
    return f"rule fit_rules[{index}]"


def _named(error: Mapping[str, Any], definition: object) -> ModelError:
    loc: list[str | int] = list(error["loc"])
    msg = str(error["msg"])
    if len(loc) >= 2 and loc[0] == "fit_rules" and isinstance(loc[1], int):
        if len(loc) >= 3 and loc[2] in RULE_OPS:
            del loc[2]  # the union's tag: the caller wrote {"op": ...}, not a nested object
        msg = f"{_rule_label(definition, loc[1])}: {msg}"
    elif len(loc) >= 2 and loc[0] == "engagement" and isinstance(loc[1], str):
        msg = f"activity type '{loc[1]}': {msg}"
    elif loc:
        msg = f"{'.'.join(str(part) for part in loc)}: {msg}"
    return {"loc": loc, "msg": msg, "type": str(error["type"])}


def _validate(definition: object) -> tuple[ScoringModel | None, list[ModelError]]:
    try:
        model = ScoringModel.model_validate(definition, context={_COLLECT_CROSS_CHECKS: True})
    except ValidationError as exc:
        return None, [_named(error, definition) for error in exc.errors(include_url=False)]
    errors = cross_check_errors(model)
    return (None, errors) if errors else (model, [])


def model_errors(definition: object) -> list[ModelError]:
    """Every reason a proposed model is refused, as pydantic-style dicts naming the rule; empty when valid."""
    return _validate(definition)[1]


def parse_model(definition: object) -> ScoringModel:
    """Validates a proposed model; raises InvalidModel with errors that name the bad rule."""
    model, errors = _validate(definition)
    if model is None:
        raise InvalidModel(errors)
    return model


# What makes a pattern slow is a repetition of something that can itself match in more than one way: a
# repeated group holding a quantifier or an alternation, like (a+)+ or (a|aa)*; backreferences, which no
# linear-time matcher handles, are refused too. The check is conservative: it may refuse a harmless pattern,
# never the other way round for these shapes, and matching also sees only MAX_MATCHED_TEXT characters.
_QUANTIFIER_BRACES = re.compile(r"\{(\d*)(,?)(\d*)\}")


def regex_problem(pattern: str) -> str | None:
    """Why a rule's regular expression is refused (nested repetition, backreference), or None when it is safe."""
    # Each open group: [holds a quantifier or alternation]
    groups: list[bool] = [False]
    last_atom_risky = False  # whether the atom a quantifier would apply to is a risky group
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            following = pattern[i + 1 : i + 2]
            if following.isdigit() and following != "0":
                return "backreferences are not allowed in a rule's pattern"
            if following == "g":
                return "backreferences are not allowed in a rule's pattern"
            last_atom_risky = False
            i += 2
            continue
        if char == "[":
            i = _skip_class(pattern, i)
            last_atom_risky = False
            continue
        if char == "(":
            if pattern.startswith("(?P=", i):
                return "backreferences are not allowed in a rule's pattern"
            if pattern.startswith("(?#", i):
                end = pattern.find(")", i)
                i = len(pattern) if end < 0 else end + 1
                continue
            if pattern.startswith("(?(", i):
                return "conditional groups are not allowed in a rule's pattern"
            groups.append(False)
            i = _group_body_start(pattern, i)
            continue
        if char == ")":
            risky = groups.pop() if len(groups) > 1 else False
            last_atom_risky = risky
            groups[-1] = groups[-1] or risky
            i += 1
            continue
        if char == "|":
            groups[-1] = True
            last_atom_risky = False
            i += 1
            continue
        quantifier_end = _quantifier_end(pattern, i)
        if quantifier_end is not None:
            if last_atom_risky:
                return (
                    "a repeated group holds a repetition or an alternation, like (a+)+ or (a|b)*, "
                    "which can take exponential time; rewrite the pattern without nesting"
                )
            groups[-1] = True
            last_atom_risky = False
            i = quantifier_end
            if i < len(pattern) and pattern[i] in "?+":
                i += 1  # lazy or possessive
            continue
        last_atom_risky = False
        i += 1
    return None


def _group_body_start(pattern: str, start: int) -> int:
    i = start + 1
    if pattern[i : i + 1] != "?":
        return i
    i += 1
    if pattern[i : i + 1] in (":", "=", "!", ">"):
        return i + 1
    if pattern[i : i + 2] in ("<=", "<!"):
        return i + 2
    if pattern[i : i + 2] == "P<":
        end = pattern.find(">", i)
        return len(pattern) if end < 0 else end + 1
    while i < len(pattern) and pattern[i] in "aiLmsux-":
        i += 1  # inline flags, as in (?i) or (?i:...)
    return i + 1 if pattern[i : i + 1] == ":" else i


def _skip_class(pattern: str, start: int) -> int:
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def _quantifier_end(pattern: str, i: int) -> int | None:
    if pattern[i] in "*+?":
        return i + 1
    if pattern[i] == "{":
        braces = _QUANTIFIER_BRACES.match(pattern, i)
        if braces is not None and (braces.group(1) or braces.group(3)):
            return braces.end()
    return None


def stored_model(definition: Mapping[str, Any]) -> ScoringModel:
    """Reads a model version as stored: this module's shape, or the first model's legacy shape."""
    if "engagement_points" in definition:
        return from_legacy(definition)
    return ScoringModel.model_validate(definition)


def from_legacy(definition: Mapping[str, Any]) -> ScoringModel:
    """Converts the first model's shape (``contains_any``/``min_value``/``max_value`` rules) to this one.

    A legacy rule's group was its name before ':'; a text rule matched whole words, an ``email_domain`` rule
    listed domains, a numeric rule was an inclusive band; one engagement cap covered all types.
    """
    rules: list[dict[str, Any]] = []
    for legacy in definition["fit_rules"]:
        name: str = legacy["name"]
        rule: dict[str, Any] = {
            "name": name,
            "points": legacy["points"],
            "disqualifies": legacy.get("disqualifies", False),
            "group": name.split(":", 1)[0].strip() if ":" in name else None,
        }
        attribute = legacy["attribute"]
        if attribute == "email_domain":
            rule |= {"op": "email_domain_in", "domains": legacy.get("contains_any", [])}
        elif attribute == "company_size":
            rule |= {
                "op": "range",
                "attribute": attribute,
                "min": legacy.get("min_value"),
                "max": legacy.get("max_value"),
            }
        else:
            rule |= {"op": "contains_word", "attribute": attribute, "words": legacy.get("contains_any", [])}
        rules.append(rule)
    thresholds = definition.get("grade_thresholds", {"A": 40, "B": 25, "C": 10})
    return parse_model(
        {
            "fit_rules": rules,
            "grade_thresholds": thresholds,
            "engagement": {
                kind: {"points": points} for kind, points in definition["engagement_points"].items() if points
            },
            "engagement_cap": definition.get("engagement_cap", 50),
            "half_life_days": definition.get("decay_half_life_days", 30.0),
            "hand_raisers": definition.get("hand_raisers", ["demo_request"]),
            "free_mail_domains": _FREE_MAIL_DOMAINS,
            "mql_threshold": definition.get("mql_threshold", 40),
            "min_grade": definition.get("min_fit_grade", "C"),
        }
    )


_FREE_MAIL_DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"]

# The first model (migration 0001, domain.DEFAULT_MODEL) in this shape: the same points for the same leads.
# Competitor and student disqualifiers are left out on purpose, since they would change today's scores;
# an admin adds them with an email_domain_in or contains_word rule and "disqualifies": true.
DEFAULT_MODEL_V2: Final = parse_model(
    {
        "fit_rules": [
            {
                "name": "title: vice president",
                "group": "title",
                "op": "contains_word",
                "attribute": "title",
                "words": ["vp", "vice president"],
                "points": 25,
            },
            {
                "name": "title: executive",
                "group": "title",
                "op": "contains_word",
                "attribute": "title",
                "words": ["chief", "ceo", "cto", "cfo", "cmo", "coo", "founder", "president"],
                "points": 30,
            },
            {
                "name": "title: director or head",
                "group": "title",
                "op": "contains_word",
                "attribute": "title",
                "words": ["director", "head of"],
                "points": 20,
            },
            {
                "name": "title: manager",
                "group": "title",
                "op": "contains_word",
                "attribute": "title",
                "words": ["manager", "lead"],
                "points": 10,
            },
            {
                "name": "company size: enterprise",
                "group": "company size",
                "op": "range",
                "attribute": "company_size",
                "min": 1000,
                "points": 15,
            },
            {
                "name": "company size: mid-market",
                "group": "company size",
                "op": "range",
                "attribute": "company_size",
                "min": 200,
                "max": 999,
                "points": 10,
            },
            {
                "name": "company size: small business",
                "group": "company size",
                "op": "range",
                "attribute": "company_size",
                "min": 50,
                "max": 199,
                "points": 5,
            },
            {"name": "free-mail domain", "op": "email_domain_in", "domains": _FREE_MAIL_DOMAINS, "points": -10},
        ],
        "grade_thresholds": {"A": 40, "B": 25, "C": 10},
        "engagement": {
            "email_click": {"points": 3},
            "content_download": {"points": 5},
            "pricing_page_view": {"points": 8},
            "webinar_attended": {"points": 10},
        },
        "engagement_cap": 50,
        "half_life_days": 30.0,
        "hand_raisers": ["demo_request"],
        "free_mail_domains": _FREE_MAIL_DOMAINS,
        "mql_threshold": 40,
        "min_grade": "C",
    }
)
