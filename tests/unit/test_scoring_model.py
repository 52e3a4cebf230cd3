"""The scoring model as data: every rule kind, validation that names the bad rule, JSON round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from baton_scoring.model import (
    DEFAULT_MODEL_V2,
    MAX_MATCHED_TEXT,
    MAX_PATTERN_LENGTH,
    InvalidModel,
    ScoringModel,
    from_legacy,
    model_errors,
    parse_model,
    regex_problem,
    stored_model,
)
from tests.unit import scoring_first_model as first_model


def definition(*rules: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "fit_rules": list(rules),
        "grade_thresholds": {"A": 40, "B": 25, "C": 10},
        "engagement": {"webinar_attended": {"points": 10, "cap": 30}},
        "half_life_days": 30,
        "hand_raisers": ["demo_request"],
        "mql_threshold": 40,
        "min_grade": "C",
        **overrides,
    }


def rule(name: str = "r", **fields: Any) -> dict[str, Any]:
    return {"name": name, "points": 10, **fields}


def only_rule(**fields: Any) -> Any:
    return parse_model(definition(rule(**fields))).fit_rules[0]


# --- every rule kind ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "value", "expected"),
    [
        ({"op": "eq", "attribute": "country", "value": "US"}, "us", True),
        ({"op": "eq", "attribute": "country", "value": "US"}, " US ", True),
        ({"op": "eq", "attribute": "country", "value": "US"}, "USA", False),
        ({"op": "eq", "attribute": "country", "value": "US"}, None, False),
        ({"op": "in", "attribute": "industry", "values": ["Software", "Fintech"]}, "fintech", True),
        ({"op": "in", "attribute": "industry", "values": ["Software", "Fintech"]}, "Retail", False),
        ({"op": "contains_word", "attribute": "title", "words": ["head of", "vp"]}, "Head of Growth", True),
        ({"op": "contains_word", "attribute": "title", "words": ["head of", "vp"]}, "VP, Sales", True),
        ({"op": "contains_word", "attribute": "title", "words": ["lead"]}, "Team Lead", True),
        ({"op": "contains_word", "attribute": "title", "words": ["lead"]}, "Leadership Coach", False),
        ({"op": "contains_word", "attribute": "title", "words": ["student"]}, None, False),
        ({"op": "regex", "attribute": "title", "pattern": r"^sr\.? "}, "Sr. Engineer", True),
        ({"op": "regex", "attribute": "title", "pattern": r"^sr\.? "}, "Engineer, Sr.", False),
        ({"op": "range", "attribute": "company_size", "min": 200, "max": 999}, 200, True),
        ({"op": "range", "attribute": "company_size", "min": 200, "max": 999}, 999, True),
        ({"op": "range", "attribute": "company_size", "min": 200, "max": 999}, 199, False),
        ({"op": "range", "attribute": "company_size", "min": 200, "max": 999}, 1000, False),
        ({"op": "range", "attribute": "company_size", "min": 1000}, 10**6, True),
        ({"op": "range", "attribute": "company_size", "max": 10}, 11, False),
        ({"op": "range", "attribute": "company_size", "min": 1}, "500", False),
        ({"op": "range", "attribute": "company_size", "min": 1}, True, False),
        ({"op": "gte", "attribute": "account_engagement", "value": 30}, 30, True),
        ({"op": "gte", "attribute": "account_engagement", "value": 30}, 29.99, False),
        ({"op": "gt", "attribute": "account_engagement", "value": 30}, 30, False),
        ({"op": "gt", "attribute": "account_engagement", "value": 30}, 30.01, True),
        ({"op": "lte", "attribute": "company_size", "value": 10}, 10, True),
        ({"op": "lte", "attribute": "company_size", "value": 10}, 11, False),
        ({"op": "lt", "attribute": "company_size", "value": 10}, 10, False),
        ({"op": "lt", "attribute": "company_size", "value": 10}, 9, True),
        ({"op": "gte", "attribute": "account_engagement", "value": 0}, None, False),
        ({"op": "email_domain_in", "domains": ["Rival.io"]}, "rival.io", True),
        ({"op": "email_domain_in", "domains": ["rival.io"]}, "eu.rival.io", True),
        ({"op": "email_domain_in", "domains": ["rival.io"]}, "notrival.io", False),
        ({"op": "email_domain_in", "domains": ["@rival.io"]}, "RIVAL.IO", True),
    ],
)
def test_each_rule_kind_matches_exactly_what_it_says(fields: dict[str, Any], value: object, expected: bool) -> None:
    assert only_rule(**fields).matches(value) is expected


def test_a_regex_rule_looks_only_at_the_leading_characters_of_a_long_value() -> None:
    regex = only_rule(op="regex", attribute="title", pattern="needle")

    assert regex.matches("x" * (MAX_MATCHED_TEXT - len("needle")) + "needle")
    assert not regex.matches("x" * MAX_MATCHED_TEXT + "needle")


def test_a_rule_keeps_its_points_group_and_disqualifier() -> None:
    student = only_rule(
        name="student", op="contains_word", attribute="title", words=["student"], points=-5, disqualifies=True
    )

    assert (student.points, student.disqualifies, student.group) == (-5, True, None)


# --- validation that names the rule ------------------------------------------------------------------------


def errors_of(*rules: dict[str, Any], **overrides: Any) -> list[dict[str, Any]]:
    return [dict(e) for e in model_errors(definition(*rules, **overrides))]


def test_an_invalid_regex_is_refused_naming_the_rule_by_name_and_index() -> None:
    errors = errors_of(
        rule("fine", op="eq", attribute="country", value="US"),
        rule("students", op="regex", attribute="title", pattern="stud(ent"),
    )

    assert len(errors) == 1
    assert errors[0]["loc"] == ["fit_rules", 1, "pattern"]
    assert errors[0]["msg"].startswith("rule 'students' (fit_rules[1]): not a valid regular expression")
    assert errors[0]["type"] == "regex_invalid"


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*)*b", "(x|xx)+y", "((ab)+)+", "(a{2,})+", r"(\w+\s?)*$"])
def test_a_regex_that_could_backtrack_exponentially_is_refused(pattern: str) -> None:
    errors = errors_of(rule("slow", op="regex", attribute="title", pattern=pattern))

    assert [e["loc"] for e in errors] == [["fit_rules", 0, "pattern"]]
    assert errors[0]["type"] == "regex_refused"
    assert "rule 'slow' (fit_rules[0])" in errors[0]["msg"]


@pytest.mark.parametrize("pattern", [r"(.)\1", r"(?P<x>a)(?P=x)", "(a)?(?(1)b|c)"])
def test_a_regex_with_a_backreference_or_condition_is_refused(pattern: str) -> None:
    assert regex_problem(pattern) is not None


@pytest.mark.parametrize(
    "pattern", [r"^(?:sr|senior)\b", r"\bv\.?p\b", "(?i)chief .* officer", "[(+]+x", r"\(a+\)+", "(?:abc)+", "a{2,5}"]
)
def test_a_regex_without_nested_repetition_is_accepted(pattern: str) -> None:
    assert regex_problem(pattern) is None
    assert errors_of(rule("ok", op="regex", attribute="title", pattern=pattern)) == []


def test_a_regex_longer_than_the_limit_is_refused() -> None:
    errors = errors_of(rule("long", op="regex", attribute="title", pattern="a" * (MAX_PATTERN_LENGTH + 1)))

    assert [e["loc"] for e in errors] == [["fit_rules", 0, "pattern"]]
    assert errors[0]["type"] == "string_too_long"


def test_a_range_with_min_above_max_is_refused_naming_the_rule() -> None:
    errors = errors_of(rule("mid-market", op="range", attribute="company_size", min=999, max=200))

    assert errors == [
        {
            "loc": ["fit_rules", 0],
            "msg": "rule 'mid-market' (fit_rules[0]): min (999) is greater than max (200)",
            "type": "range_inverted",
        }
    ]


def test_a_range_with_no_bound_is_refused() -> None:
    errors = errors_of(rule("any size", op="range", attribute="company_size"))

    assert [e["type"] for e in errors] == ["range_unbounded"]


def test_duplicate_rule_names_are_refused_at_the_second_one() -> None:
    errors = errors_of(
        rule("title: vp", op="contains_word", attribute="title", words=["vp"]),
        rule("country", op="eq", attribute="country", value="US"),
        rule("Title: VP", op="contains_word", attribute="title", words=["vice president"]),
    )

    assert errors == [
        {
            "loc": ["fit_rules", 2, "name"],
            "msg": "rule 'Title: VP' (fit_rules[2]): name already used by fit_rules[0]",
            "type": "rule_name_duplicate",
        }
    ]


def test_an_unknown_attribute_is_refused_naming_the_rule() -> None:
    errors = errors_of(rule("shoe size", op="eq", attribute="shoe_size", value="44"))

    assert [e["loc"] for e in errors] == [["fit_rules", 0, "attribute"]]
    assert errors[0]["msg"].startswith("rule 'shoe size' (fit_rules[0]): ")


def test_a_numeric_comparison_on_a_text_attribute_is_refused() -> None:
    errors = errors_of(rule("senior", op="gte", attribute="title", value=3))

    assert [e["loc"] for e in errors] == [["fit_rules", 0, "attribute"]]


def test_an_unknown_op_is_refused_naming_the_rule() -> None:
    errors = errors_of(rule("fuzzy", op="sounds_like", attribute="title", value="ceo"))

    assert [(e["loc"], e["type"]) for e in errors] == [(["fit_rules", 0], "union_tag_invalid")]
    assert "rule 'fuzzy' (fit_rules[0])" in errors[0]["msg"]


def test_an_unknown_field_in_a_rule_is_refused() -> None:
    errors = errors_of(rule("typo", op="eq", attribute="country", value="US", pionts=3))

    assert [e["loc"] for e in errors] == [["fit_rules", 0, "pionts"]]
    assert errors[0]["type"] == "extra_forbidden"


def test_a_rule_without_a_name_is_named_by_its_index() -> None:
    errors = errors_of({"op": "eq", "attribute": "country", "value": "US", "points": 1})

    assert [e["loc"] for e in errors] == [["fit_rules", 0, "name"]]
    assert errors[0]["msg"].startswith("rule fit_rules[0]: ")


def test_an_invalid_domain_in_a_domain_rule_is_refused() -> None:
    errors = errors_of(rule("competitors", op="email_domain_in", domains=["rival.io", "not a domain"]))

    assert [e["loc"] for e in errors] == [["fit_rules", 0, "domains", 1]]
    assert "'not a domain'" in errors[0]["msg"]


@pytest.mark.parametrize(
    "thresholds", [{"A": 25, "B": 25, "C": 10}, {"A": 40, "B": 10, "C": 25}, {"A": 10, "B": 25, "C": 40}]
)
def test_grade_thresholds_must_strictly_descend(thresholds: dict[str, int]) -> None:
    errors = errors_of(grade_thresholds=thresholds)

    assert [(e["loc"], e["type"]) for e in errors] == [(["grade_thresholds"], "grades_not_descending")]


@pytest.mark.parametrize("half_life", [0, -1, "inf"])
def test_the_half_life_must_be_positive_and_finite(half_life: object) -> None:
    assert [e["loc"] for e in errors_of(half_life_days=half_life)] == [["half_life_days"]]


def test_an_engagement_type_with_zero_points_is_refused_naming_the_type() -> None:
    errors = errors_of(engagement={"email_open": {"points": 0}})

    assert [e["loc"] for e in errors] == [["engagement", "email_open", "points"]]
    assert errors[0]["msg"].startswith("activity type 'email_open': ")


def test_a_hand_raiser_listed_twice_is_refused() -> None:
    errors = errors_of(hand_raisers=["demo_request", "contact_sales", "demo_request"])

    assert [(e["loc"], e["type"]) for e in errors] == [(["hand_raisers", 2], "hand_raiser_duplicate")]


def test_parse_model_raises_invalid_model_carrying_every_error() -> None:
    bad = definition(
        rule("a", op="regex", attribute="title", pattern="("),
        rule("b", op="range", attribute="company_size", min=5, max=1),
    )

    with pytest.raises(InvalidModel) as raised:
        parse_model(bad)

    assert [e["loc"] for e in raised.value.errors] == [["fit_rules", 0, "pattern"], ["fit_rules", 1]]
    json.dumps(raised.value.errors)  # what the 422 carries must be JSON


def test_the_model_class_itself_refuses_what_only_the_whole_model_shows() -> None:
    duplicate = definition(
        rule("x", op="eq", attribute="country", value="US"), rule("x", op="eq", attribute="country", value="CA")
    )

    with pytest.raises(ValidationError, match="name already used"):
        ScoringModel.model_validate(duplicate)


def test_a_valid_model_has_no_errors() -> None:
    assert model_errors(DEFAULT_MODEL_V2.model_dump(mode="json")) == []


# --- the default model and the first model's shape ---------------------------------------------------------


def test_the_default_model_is_the_first_model_converted() -> None:
    assert from_legacy(first_model.DEFAULT_MODEL.model_dump(mode="json")) == DEFAULT_MODEL_V2


def test_a_stored_version_is_read_in_either_shape() -> None:
    assert stored_model(first_model.DEFAULT_MODEL.model_dump(mode="json")) == DEFAULT_MODEL_V2
    assert stored_model(DEFAULT_MODEL_V2.model_dump(mode="json")) == DEFAULT_MODEL_V2


def test_the_default_model_keeps_vice_president_before_president_in_one_group() -> None:
    titles = [r for r in DEFAULT_MODEL_V2.fit_rules if r.group == "title"]

    assert [r.name for r in titles][:2] == ["title: vice president", "title: executive"]


# --- JSON round trip ---------------------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz :-", min_size=1, max_size=20).filter(lambda s: s.strip())
phrases = st.text(alphabet="abcdefghijklmnopqrstuvwxyz .", min_size=1, max_size=15).filter(lambda s: s.strip())
points = st.integers(-1000, 1000)
numbers = st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
text_attributes = st.sampled_from(["title", "company", "industry", "country", "source", "campaign", "email_domain"])
numeric_attributes = st.sampled_from(["company_size", "account_engagement"])
domains = st.sampled_from(["gmail.com", "rival.io", "eu.rival.io", "example.org", "uni.edu"])


@st.composite
def ranges(draw: st.DrawFn) -> dict[str, Any]:
    low, high = sorted([draw(numbers), draw(numbers)])
    bounds = draw(st.sampled_from([{"min": low, "max": high}, {"min": low}, {"max": high}]))
    return {"op": "range", "attribute": draw(numeric_attributes), **bounds}


rule_bodies = st.one_of(
    st.builds(lambda a, v: {"op": "eq", "attribute": a, "value": v}, text_attributes, phrases),
    st.builds(lambda a, v: {"op": "in", "attribute": a, "values": v}, text_attributes, st.lists(phrases, min_size=1)),
    st.builds(
        lambda a, w: {"op": "contains_word", "attribute": a, "words": w}, text_attributes, st.lists(phrases, min_size=1)
    ),
    st.builds(
        lambda a, p: {"op": "regex", "attribute": a, "pattern": p},
        text_attributes,
        st.sampled_from([r"^sr\.? ", "chief .* officer", r"\bvp\b", "(?:a|b)c+"]),
    ),
    ranges(),
    st.builds(
        lambda op, a, v: {"op": op, "attribute": a, "value": v},
        st.sampled_from(["gte", "gt", "lte", "lt"]),
        numeric_attributes,
        numbers,
    ),
    st.builds(lambda d: {"op": "email_domain_in", "domains": d}, st.lists(domains, min_size=1)),
)


@st.composite
def model_definitions(draw: st.DrawFn) -> dict[str, Any]:
    rule_names = draw(st.lists(names, max_size=8, unique_by=lambda n: n.strip().casefold()))
    rules = [
        {
            "name": name,
            "points": draw(points),
            "disqualifies": draw(st.booleans()),
            "group": draw(st.one_of(st.none(), st.sampled_from(["title", "size"]))),
            **draw(rule_bodies),
        }
        for name in rule_names
    ]
    c = draw(st.integers(-100, 100))
    b = draw(st.integers(c + 1, c + 100))
    a = draw(st.integers(b + 1, b + 100))
    engagement = draw(
        st.dictionaries(
            st.sampled_from(["email_click", "webinar_attended", "pricing_page_view"]),
            st.fixed_dictionaries(
                {"points": st.integers(1, 1000)}, optional={"cap": st.one_of(st.none(), st.integers(1, 500))}
            ),
        )
    )
    return {
        "fit_rules": rules,
        "grade_thresholds": {"A": a, "B": b, "C": c},
        "engagement": engagement,
        "engagement_cap": draw(st.one_of(st.none(), st.integers(1, 1000))),
        "half_life_days": draw(st.floats(0.01, 3650, allow_nan=False)),
        "hand_raisers": draw(st.lists(st.sampled_from(["demo_request", "contact_sales"]), unique=True)),
        "free_mail_domains": draw(st.lists(domains, max_size=3)),
        "mql_threshold": draw(st.integers(-100, 500)),
        "min_grade": draw(st.sampled_from(["A", "B", "C", "D"])),
    }


@settings(max_examples=150, deadline=None)
@given(model_definitions())
def test_a_model_round_trips_through_json_unchanged(raw: dict[str, Any]) -> None:
    model = parse_model(raw)

    text = model.model_dump_json()
    again = ScoringModel.model_validate_json(text)

    assert again == model
    assert again.model_dump_json() == text
    assert parse_model(json.loads(text)) == model
