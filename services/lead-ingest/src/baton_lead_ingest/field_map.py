"""Field maps and form bodies, free of I/O: where a source's canonical fields live in the body it posts.

A ``field_map`` maps a canonical field to a path in the body: dots walk into objects (``lead.email_address``),
``[N]`` indexes a list (``email[0]``), ``[key=value]`` picks the first list element whose ``key`` equals
``value`` (``fields[name=email].value``). The key of a selector may itself walk into the element
(``answers[field.ref=work_email].email``).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote_plus

from baton.errors import Unprocessable
from baton_lead_ingest.domain import MAX_UTM_KEY_LENGTH, MAX_UTM_KEYS, PROFILE_FIELDS

CANONICAL_FIELDS = frozenset({"email", "utm", *PROFILE_FIELDS})
"""The canonical lead fields a ``field_map`` may name; ``utm.<key>`` names one UTM parameter."""

# A path is configuration typed by a person, not data: these bounds only stop a map that could never be meant.
MAX_PATH_LENGTH = 256
MAX_PATH_STEPS = 16
MAX_FORM_FIELDS = 1000


class Missing(enum.Enum):
    """The type of ``MISSING``: a path that finds nothing in a body."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING


@dataclass(frozen=True)
class Key:
    """Walks into an object by one of its keys."""

    name: str


@dataclass(frozen=True)
class Index:
    """Takes the element of a list at a position (0 is the first)."""

    position: int


@dataclass(frozen=True)
class Match:
    """Takes the first element of a list whose value at ``key`` (itself a walk into the element) equals ``value``."""

    key: tuple[str, ...]
    value: str


Step = Key | Index | Match


@dataclass(frozen=True)
class Path:
    """A parsed path: its text as written and the steps that walk a body."""

    text: str
    steps: tuple[Step, ...]


class PathError(ValueError):
    """A path that cannot be parsed; ``reason`` says what is wrong and ``position`` where (0-based)."""

    def __init__(self, text: str, reason: str, position: int) -> None:
        super().__init__(f"{reason} at position {position} in path {text!r}")
        self.text = text
        self.reason = reason
        self.position = position


@functools.lru_cache(maxsize=1024)
def parse_path(text: str) -> Path:
    """Parses a ``field_map`` path, refusing with a ``PathError`` that names what is wrong and where.

    Args:
        text: The path as written, e.g. ``fields[name=email].value``.

    Returns:
        The parsed path; the same text always gives the same (immutable) ``Path``.

    Raises:
        PathError: The path is empty, too long or too deep, has an empty segment, an unbalanced
            bracket, a bad index or a selector without a key.
    """
    if not text:
        raise PathError(text, "empty path", 0)
    if len(text) > MAX_PATH_LENGTH:
        raise PathError(text, f"path longer than {MAX_PATH_LENGTH} characters", MAX_PATH_LENGTH)
    steps: list[Step] = []
    position = 0
    expect_name = True
    while position < len(text):
        char = text[position]
        if char == "[":
            if expect_name and position > 0:
                raise PathError(text, "empty segment", position)
            close = _closing_bracket(text, position)
            steps.append(_selector(text, position + 1, close))
            position = close + 1
            expect_name = False
        elif char == "]":
            raise PathError(text, "unbalanced bracket: ']' without '['", position)
        elif char == ".":
            if expect_name:
                raise PathError(text, "empty segment", position)
            position += 1
            expect_name = True
            if position == len(text):
                raise PathError(text, "empty segment", position)
        else:
            if not expect_name:
                raise PathError(text, "expected '.' or '[' after ']'", position)
            end = _name_end(text, position)
            steps.append(Key(text[position:end]))
            position = end
            expect_name = False
        if len(steps) > MAX_PATH_STEPS:
            raise PathError(text, f"path deeper than {MAX_PATH_STEPS} steps", position)
    return Path(text=text, steps=tuple(steps))


def _name_end(text: str, start: int) -> int:
    """Returns where an object key that starts at ``start`` ends: at the next '.', '[' or ']', or the end."""
    end = start
    while end < len(text) and text[end] not in ".[]":
        end += 1
    return end


def _closing_bracket(text: str, opening: int) -> int:
    """Returns the position of the ']' that closes the '[' at ``opening``; selectors do not nest."""
    for position in range(opening + 1, len(text)):
        if text[position] == "]":
            return position
        if text[position] == "[":
            raise PathError(text, "unbalanced bracket: '[' inside '[...]'", position)
    raise PathError(text, "unbalanced bracket: '[' without ']'", opening)


def _selector(text: str, start: int, end: int) -> Index | Match:
    """Parses the inside of ``[...]`` spanning ``text[start:end]``: an index or a ``key=value`` match."""
    inside = text[start:end]
    if not inside:
        raise PathError(text, "empty brackets", start - 1)
    key, equals, value = inside.partition("=")
    if equals:
        names = tuple(key.split("."))
        if not key or not all(names):
            raise PathError(text, "selector needs a key before '='", start)
        return Match(key=names, value=value)
    if not inside.isdecimal() or not inside.isascii():
        raise PathError(text, f"bad index {inside!r}: expected a whole number from 0, or key=value", start)
    return Index(int(inside))


def resolve(body: Any, path: Path) -> Any | Literal[Missing.MISSING]:
    """Returns the value ``path`` finds in ``body``, or ``MISSING``; never raises on a body that does not match."""
    current: Any = body
    for step in path.steps:
        current = _step(current, step)
        if current is MISSING:
            break
    return current


def _step(current: Any, step: Step) -> Any:
    """Takes one step into ``current``, or returns ``MISSING`` when ``current`` has no such place."""
    if isinstance(step, Key):
        return _walk(current, (step.name,))
    if not isinstance(current, list | tuple):
        return MISSING
    if isinstance(step, Index):
        return current[step.position] if step.position < len(current) else MISSING
    return next((element for element in current if _matches(_walk(element, step.key), step.value)), MISSING)


def _walk(current: Any, names: tuple[str, ...]) -> Any:
    """Walks into nested objects by key names, or returns ``MISSING``."""
    for name in names:
        if not isinstance(current, Mapping) or name not in current:
            return MISSING
        current = current[name]
    return current


def _matches(found: Any, expected: str) -> bool:
    """Tells whether a value in the body equals a selector's text; integers and booleans compare as JSON writes them.

    Vendors key answers by numeric ids (LinkedIn's ``questionId``), so ``[questionId=42]`` must find ``42``.
    """
    if isinstance(found, str):
        return found == expected
    if isinstance(found, bool):
        return ("true" if found else "false") == expected
    if isinstance(found, int):
        return str(found) == expected
    return False


def parse_field_map(field_map: Mapping[str, Any]) -> dict[str, Path]:
    """Validates a source's ``field_map``, refusing unknown canonical fields and bad paths all at once.

    Args:
        field_map: Canonical field (or ``utm.<key>``) to path in the body.

    Returns:
        Canonical field to parsed path, in the map's order.

    Raises:
        Unprocessable: With one error per bad entry, located at ``["field_map", <field>]``.
    """
    errors: list[dict[str, Any]] = []
    parsed: dict[str, Path] = {}
    for field, text in field_map.items():
        problem = _field_problem(field)
        if problem is None and not isinstance(text, str):
            problem = ("field_map.path", "the path must be a string")
        if problem is None:
            try:
                parsed[field] = parse_path(text)
            except PathError as error:
                problem = ("field_map.path", str(error))
        if problem is not None:
            errors.append({"loc": ["field_map", field], "msg": problem[1], "type": problem[0]})
    utm_keys = [field for field in parsed if field.startswith("utm.")]
    if len(utm_keys) > MAX_UTM_KEYS:
        errors.append(
            {"loc": ["field_map"], "msg": f"at most {MAX_UTM_KEYS} utm.<key> fields", "type": "field_map.utm_keys"}
        )
    if errors:
        raise Unprocessable("The field map is not valid.", errors=errors)
    return parsed


def _field_problem(field: Any) -> tuple[str, str] | None:
    """Returns the error type and message for a map key that names no canonical field, or ``None``."""
    if not isinstance(field, str):
        return ("field_map.unknown_field", "the canonical field must be a string")
    if field.startswith("utm."):
        utm_key = field.removeprefix("utm.")
        if not utm_key or "." in utm_key or len(utm_key) > MAX_UTM_KEY_LENGTH:
            return ("field_map.unknown_field", f"utm.<key> needs one key of 1 to {MAX_UTM_KEY_LENGTH} characters")
        return None
    if field not in CANONICAL_FIELDS:
        known = ", ".join(sorted(CANONICAL_FIELDS))
        return ("field_map.unknown_field", f"unknown canonical field {field!r}; known: {known}, utm.<key>")
    return None


def apply_field_map(
    body: Any, field_map: Mapping[str, str], *, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Turns a body into canonical fields by a ``field_map``, over a preset's output when one is given.

    A field the map names is the map's alone: when its path finds nothing the field is left out, not taken
    from ``base``. ``utm`` replaces the whole UTM object; ``utm.<key>`` sets one parameter and keeps the rest.

    Args:
        body: The parsed body (JSON or form).
        field_map: Canonical field (or ``utm.<key>``) to path in the body.
        base: The preset's canonical fields, which the map overrides for the fields it names.

    Returns:
        The canonical fields, values as found in the body (normalising them is the next step).

    Raises:
        Unprocessable: The map itself is not valid (see ``parse_field_map``).
    """
    paths = parse_field_map(field_map)
    lead: dict[str, Any] = dict(base or {})
    if isinstance(lead.get("utm"), Mapping):
        lead["utm"] = dict(lead["utm"])
    if "utm" in paths:
        _put(lead, "utm", resolve(body, paths["utm"]))
    for field, path in paths.items():
        if field.startswith("utm."):
            _put_utm(lead, field.removeprefix("utm."), resolve(body, path))
        elif field != "utm":
            _put(lead, field, resolve(body, path))
    return lead


def _put(lead: dict[str, Any], field: str, value: Any) -> None:
    """Sets a canonical field to what its path found, or removes it when the path found nothing."""
    if value is MISSING:
        lead.pop(field, None)
    else:
        lead[field] = dict(value) if field == "utm" and isinstance(value, Mapping) else value


def _put_utm(lead: dict[str, Any], key: str, value: Any) -> None:
    """Sets one UTM parameter, keeping the others; a ``utm`` that is not an object gives way to one."""
    utm = lead.get("utm")
    if not isinstance(utm, dict):
        utm = {}
    if value is MISSING:
        utm.pop(key, None)
    else:
        utm[key] = value
    if utm:
        lead["utm"] = utm
    else:
        lead.pop("utm", None)


def parse_form(raw: bytes, *, charset: str = "utf-8") -> dict[str, str | list[str]]:
    """Parses an ``application/x-www-form-urlencoded`` body; a repeated field becomes a list, in order.

    Args:
        raw: The body as received.
        charset: The ``charset`` of the request's content type.

    Returns:
        Field name to its value, or to its values when the field came more than once.

    Raises:
        Unprocessable: Over ``MAX_FORM_FIELDS`` fields, an unknown charset, or text (raw or
            percent-escaped) that is not valid in the charset.
    """
    pairs = [pair for pair in raw.split(b"&") if pair]
    if len(pairs) > MAX_FORM_FIELDS:
        raise _form_error(f"more than {MAX_FORM_FIELDS} form fields", "form.too_many_fields")
    form: dict[str, str | list[str]] = {}
    for pair in pairs:
        name, _, value = pair.partition(b"=")
        _add_field(form, _form_text(name, charset), _form_text(value, charset))
    return form


def _form_text(raw: bytes, charset: str) -> str:
    """Decodes one form name or value: '+' is a space, percent-escapes are bytes in the charset."""
    try:
        text = raw.decode(charset)
        return unquote_plus(text, encoding=charset, errors="strict")
    except LookupError as error:
        raise _form_error(f"unknown charset {charset!r}", "form.charset") from error
    except UnicodeError as error:
        raise _form_error(f"the form body is not valid {charset}", "form.encoding") from error


def _add_field(form: dict[str, str | list[str]], name: str, value: str) -> None:
    """Adds one field to a parsed form, turning a repeated field into a list of its values."""
    present = form.get(name)
    if present is None:
        form[name] = value
    elif isinstance(present, list):
        present.append(value)
    else:
        form[name] = [present, value]


def _form_error(msg: str, error_type: str) -> Unprocessable:
    """Returns the error a form body that cannot be parsed answers with."""
    return Unprocessable(
        f"The form body cannot be parsed: {msg}.", errors=[{"loc": ["body"], "msg": msg, "type": error_type}]
    )
