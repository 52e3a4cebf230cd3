"""Field-map paths (parse, resolve, apply over a preset) and urlencoded form bodies."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.errors import Unprocessable
from baton_lead_ingest.domain import MAX_UTM_KEYS
from baton_lead_ingest.field_map import (
    MAX_FORM_FIELDS,
    MAX_PATH_LENGTH,
    MAX_PATH_STEPS,
    MISSING,
    Index,
    Key,
    Match,
    Path,
    PathError,
    apply_field_map,
    parse_field_map,
    parse_form,
    parse_path,
    resolve,
)

HUBSPOT_STYLE = {
    "fields": [
        {"name": "firstname", "value": "Jane"},
        {"name": "email", "value": "jane@example.com"},
        {"name": "email", "value": "second@example.com"},
    ],
    "context": {"pageUri": "https://example.com/demo"},
}


# --- parse_path: each syntax form ---------------------------------------------------------------


def test_dots_walk_into_objects() -> None:
    assert parse_path("lead.email_address").steps == (Key("lead"), Key("email_address"))


def test_bracketed_number_indexes_a_list() -> None:
    assert parse_path("email[0]").steps == (Key("email"), Index(0))


def test_bracketed_key_value_selects_a_list_element() -> None:
    assert parse_path("fields[name=email].value").steps == (
        Key("fields"),
        Match(key=("name",), value="email"),
        Key("value"),
    )


def test_syntax_forms_combine() -> None:
    assert parse_path("a.b[2].c[name=x].value").steps == (
        Key("a"),
        Key("b"),
        Index(2),
        Key("c"),
        Match(key=("name",), value="x"),
        Key("value"),
    )


def test_selectors_chain_and_a_path_may_start_with_one() -> None:
    assert parse_path("[0][1]").steps == (Index(0), Index(1))


def test_selector_value_may_hold_dots_and_its_key_may_walk_into_the_element() -> None:
    assert parse_path("answers[field.ref=utm.source].text").steps == (
        Key("answers"),
        Match(key=("field", "ref"), value="utm.source"),
        Key("text"),
    )


def test_object_keys_may_hold_spaces_and_other_characters() -> None:
    assert parse_path("First Name.what's=this?").steps == (Key("First Name"), Key("what's=this?"))


def test_path_keeps_its_text() -> None:
    assert parse_path("lead.email").text == "lead.email"


# --- parse_path: errors name what is wrong and where ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason", "position"),
    [
        ("", "empty path", 0),
        ("a..b", "empty segment", 2),
        (".a", "empty segment", 0),
        ("a.", "empty segment", 2),
        ("a.[0]", "empty segment", 2),
        ("fields[name=email.value", "unbalanced bracket: '[' without ']'", 6),
        ("fields]", "unbalanced bracket: ']' without '['", 6),
        ("a[b[0]]", "unbalanced bracket: '[' inside '[...]'", 3),
        ("a[]", "empty brackets", 1),
        ("a[0]b", "expected '.' or '[' after ']'", 4),
        ("a[=x]", "selector needs a key before '='", 2),
        ("a[k.=x]", "selector needs a key before '='", 2),
    ],
)
def test_malformed_path_is_refused_naming_the_problem_and_position(text: str, reason: str, position: int) -> None:
    with pytest.raises(PathError) as refused:
        parse_path(text)

    assert (refused.value.reason, refused.value.position) == (reason, position)
    assert reason in str(refused.value) and repr(text) in str(refused.value)


@pytest.mark.parametrize("index", ["-1", "x", "1.5", " 1", "\u0661"])
def test_index_that_is_not_a_whole_number_from_zero_is_a_bad_index(index: str) -> None:
    with pytest.raises(PathError, match="bad index"):
        parse_path(f"emails[{index}]")


def test_path_over_the_length_limit_is_refused() -> None:
    parse_path("a" * MAX_PATH_LENGTH)
    with pytest.raises(PathError, match=f"longer than {MAX_PATH_LENGTH}"):
        parse_path("a" * (MAX_PATH_LENGTH + 1))


def test_path_over_the_depth_limit_is_refused() -> None:
    assert len(parse_path(".".join(["a"] * MAX_PATH_STEPS)).steps) == MAX_PATH_STEPS
    with pytest.raises(PathError, match=f"deeper than {MAX_PATH_STEPS}"):
        parse_path("a" + "[0]" * MAX_PATH_STEPS)


# --- resolve ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fields[name=email].value", "jane@example.com"),
        ("fields[1].value", "jane@example.com"),
        ("fields[2].value", "second@example.com"),
        ("context.pageUri", "https://example.com/demo"),
        ("fields[0]", {"name": "firstname", "value": "Jane"}),
    ],
)
def test_path_finds_the_value_it_names(text: str, expected: Any) -> None:
    assert resolve(HUBSPOT_STYLE, parse_path(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "missing",
        "context.missing",
        "fields[3]",
        "fields[name=phone].value",
        "fields.name",
        "context[0]",
        "context.pageUri[0]",
        "context.pageUri.host",
        "fields[0].value.first",
        "fields[value.x=Jane]",
    ],
)
def test_path_that_does_not_match_the_body_finds_missing(text: str) -> None:
    assert resolve(HUBSPOT_STYLE, parse_path(text)) is MISSING


def test_selector_matches_numeric_and_boolean_values_as_json_writes_them() -> None:
    answers = {"answers": [{"questionId": 41, "a": "no"}, {"questionId": 42, "a": "yes"}, {"ok": True, "a": "t"}]}

    assert resolve(answers, parse_path("answers[questionId=42].a")) == "yes"
    assert resolve(answers, parse_path("answers[ok=true].a")) == "t"
    assert resolve(answers, parse_path("answers[questionId=42.0].a")) is MISSING


def test_selector_key_walks_into_the_element() -> None:
    typeform = {"answers": [{"field": {"ref": "name"}, "text": "Jane"}, {"field": {"ref": "mail"}, "email": "j@x.io"}]}

    assert resolve(typeform, parse_path("answers[field.ref=mail].email")) == "j@x.io"


def test_null_in_the_body_is_a_value_not_missing() -> None:
    assert resolve({"lead": {"phone": None}}, parse_path("lead.phone")) is None


# --- apply_field_map ----------------------------------------------------------------------------


def test_field_map_turns_a_body_into_canonical_fields() -> None:
    lead = apply_field_map(
        HUBSPOT_STYLE,
        {"email": "fields[name=email].value", "first_name": "fields[name=firstname].value", "phone": "x.phone"},
    )

    assert lead == {"email": "jane@example.com", "first_name": "Jane"}


def test_field_map_overrides_the_preset_only_for_the_fields_it_names() -> None:
    preset = {"email": "preset@example.com", "company": "Acme", "utm": {"source": "ads", "medium": "cpc"}}

    lead = apply_field_map(HUBSPOT_STYLE, {"email": "fields[2].value", "utm.source": "context.pageUri"}, base=preset)

    assert lead == {
        "email": "second@example.com",
        "company": "Acme",
        "utm": {"source": "https://example.com/demo", "medium": "cpc"},
    }
    assert preset == {"email": "preset@example.com", "company": "Acme", "utm": {"source": "ads", "medium": "cpc"}}


def test_field_the_map_names_but_the_body_lacks_does_not_fall_back_to_the_preset() -> None:
    preset = {"email": "a@example.com", "company": "Acme", "utm": {"source": "ads"}}

    lead = apply_field_map({}, {"company": "org.name", "utm.source": "src"}, base=preset)

    assert lead == {"email": "a@example.com"}


def test_utm_maps_as_a_whole_object_and_a_utm_key_refines_it() -> None:
    body = {"tracking": {"source": "google", "medium": "cpc"}, "cmp": "spring"}

    lead = apply_field_map(
        body, {"utm": "tracking", "utm.campaign": "cmp"}, base={"utm": {"term": "kept only without a utm map"}}
    )

    assert lead == {"utm": {"source": "google", "medium": "cpc", "campaign": "spring"}}
    assert body["tracking"] == {"source": "google", "medium": "cpc"}


def test_unknown_canonical_field_and_bad_path_are_refused_together_naming_each_entry() -> None:
    with pytest.raises(Unprocessable) as refused:
        parse_field_map({"email": "a..b", "mail": "email", "utm.a.b": "x", "utm.": "y", "phone": 7})

    errors = {tuple(error["loc"]): error for error in refused.value.extensions["errors"]}
    assert set(errors) == {
        ("field_map", "email"),
        ("field_map", "mail"),
        ("field_map", "utm.a.b"),
        ("field_map", "utm."),
        ("field_map", "phone"),
    }
    assert errors[("field_map", "email")]["type"] == "field_map.path"
    assert "empty segment" in errors[("field_map", "email")]["msg"]
    assert errors[("field_map", "mail")]["type"] == "field_map.unknown_field"
    assert "'mail'" in errors[("field_map", "mail")]["msg"]


def test_applying_an_invalid_map_is_refused() -> None:
    with pytest.raises(Unprocessable):
        apply_field_map(HUBSPOT_STYLE, {"emails": "fields[0].value"})


def test_field_map_with_too_many_utm_keys_is_refused() -> None:
    within = {f"utm.k{n}": f"p{n}" for n in range(MAX_UTM_KEYS)}
    assert len(parse_field_map(within)) == MAX_UTM_KEYS

    with pytest.raises(Unprocessable) as refused:
        parse_field_map({**within, "utm.extra": "p"})
    assert refused.value.extensions["errors"][0]["type"] == "field_map.utm_keys"


# --- parse_form ---------------------------------------------------------------------------------


def test_form_decodes_plus_and_percent_escapes_and_repeated_fields_become_lists() -> None:
    raw = b"first_name=Jane+Ann&email=jane%40example.com&interest=a&interest=b%26c&interest=&note=caf%C3%A9&empty"

    assert parse_form(raw) == {
        "first_name": "Jane Ann",
        "email": "jane@example.com",
        "interest": ["a", "b&c", ""],
        "note": "café",
        "empty": "",
    }


def test_empty_form_is_empty() -> None:
    assert parse_form(b"") == {}
    assert parse_form(b"&&") == {}


def test_form_in_another_charset_decodes_by_it() -> None:
    assert parse_form(b"company=M%FCller+GmbH&city=K\xf6ln", charset="iso-8859-1") == {
        "company": "Müller GmbH",
        "city": "Köln",
    }


@pytest.mark.parametrize("raw", [b"name=%FF%FE", b"name=\xff", b"%C3=x"])
def test_form_that_is_not_valid_utf8_is_refused(raw: bytes) -> None:
    with pytest.raises(Unprocessable) as refused:
        parse_form(raw)
    assert refused.value.extensions["errors"] == [
        {"loc": ["body"], "msg": "the form body is not valid utf-8", "type": "form.encoding"}
    ]


def test_form_with_an_unknown_charset_is_refused() -> None:
    with pytest.raises(Unprocessable, match="unknown charset"):
        parse_form(b"a=1", charset="no-such-charset")


def test_form_with_more_fields_than_the_limit_is_refused() -> None:
    assert len(parse_form(b"&".join(b"f%d=1" % n for n in range(MAX_FORM_FIELDS)))) == MAX_FORM_FIELDS

    with pytest.raises(Unprocessable) as refused:
        parse_form(b"&".join([b"f=1"] * (MAX_FORM_FIELDS + 1)))
    assert refused.value.extensions["errors"][0]["type"] == "form.too_many_fields"


# --- properties ---------------------------------------------------------------------------------

ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)
ANY_STEP = st.one_of(
    st.builds(Key, st.text(max_size=6)),
    st.builds(Index, st.integers(min_value=0, max_value=6)),
    st.builds(Match, st.lists(st.text(max_size=4), min_size=1, max_size=3).map(tuple), st.text(max_size=6)),
)

# Names and selector values a path can spell; letters only, so no string can equal a number or a boolean.
NAMES = st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=6)
WORDS = NAMES.filter(lambda word: word not in {"true", "false"})
PATHABLE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | WORDS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(body=ANY_JSON, steps=st.lists(ANY_STEP, max_size=6))
def test_resolve_never_raises_whatever_the_body(body: Any, steps: list[Any]) -> None:
    found = resolve(body, Path(text="generated", steps=tuple(steps)))

    assert found is MISSING or found is body or _occurs_in(found, body)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=string.ascii_letters + "0123456789.[]=-_ ", max_size=30))
def test_parse_path_either_parses_or_says_why(text: str) -> None:
    try:
        path = parse_path(text)
    except PathError as refused:
        assert 0 <= refused.position <= len(text)
    else:
        assert 1 <= len(path.steps) <= MAX_PATH_STEPS


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(NAMES, PATHABLE_JSON, min_size=1, max_size=4), data=st.data())
def test_path_built_from_a_real_location_resolves_to_the_value_there(body: dict[str, Any], data: st.DataObject) -> None:
    text, expected = _location(body, data)

    assert resolve(body, parse_path(text)) == expected


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=20))
def test_form_gives_back_the_encoded_pairs_with_repeats_as_lists(pairs: list[tuple[str, str]]) -> None:
    expected: dict[str, list[str]] = {}
    for name, value in pairs:
        expected.setdefault(name, []).append(value)

    parsed = parse_form(urlencode(pairs).encode("ascii"))

    assert parsed == {name: values[0] if len(values) == 1 else values for name, values in expected.items()}


def _occurs_in(found: Any, body: Any) -> bool:
    """Tells whether ``found`` is the very object at some place in ``body`` (resolve only walks, never builds)."""
    stack = [body]
    while stack:
        item = stack.pop()
        if item is found:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _location(body: Any, data: st.DataObject) -> tuple[str, Any]:
    """Walks a random way down ``body`` and returns the path text written for it and the value reached."""
    text = ""
    current = body
    for depth in range(MAX_PATH_STEPS):
        if depth and (not data.draw(st.booleans()) or not current or not isinstance(current, dict | list)):
            break
        if isinstance(current, dict):
            name = data.draw(st.sampled_from(sorted(current)))
            text += f".{name}" if text else name
            current = current[name]
            continue
        position = data.draw(st.integers(min_value=0, max_value=len(current) - 1))
        element = current[position]
        selectable = (
            sorted(key for key, value in element.items() if isinstance(value, str)) if isinstance(element, dict) else []
        )
        if selectable and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(selectable))
            text += f"[{key}={element[key]}]"
            # A selector finds the first element with that value, which may come before the one drawn.
            current = next(item for item in current if isinstance(item, dict) and item.get(key) == element[key])
        else:
            text += f"[{position}]"
            current = element
    return text, current
