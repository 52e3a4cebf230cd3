"""How lead-ingest turns a posted e-mail, country, phone and company size into the one form it stores, free of I/O.

Each rule either returns the normal form or raises ``InvalidLeadValue`` naming the field; its message never
repeats the posted value, which may be personal data or a hostile string.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import cache, lru_cache

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

from baton.errors import Unprocessable

MAX_COMPANY_SIZE = 10_000_000
MAX_PHONE_LENGTH = 64
MAX_EMAIL_BYTES = 254
"""The longest address ``email-validator`` accepts, in UTF-8 bytes (RFC 5321 with RFC 3696's errata)."""
MAX_DOMAIN_LENGTH = 253

COUNTRY_ALIASES = {"uk": "GB"}
"""Names people use for a country that ISO 3166 does not list; ``USA`` needs none, it is the alpha-3 code."""

_ATEXT = r"a-z0-9!#$%&'*+/=?^_`{|}~-"
_LOWER_ASCII_LOCAL_PART = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*", re.ASCII)
"""An RFC 5322 dot-atom of lower-case ASCII: a local part ``email-validator`` accepts and leaves as it is."""

_COMPANY_SIZE_NUMBER = r"[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+"
_COMPANY_SIZE = re.compile(
    rf"(?P<low>{_COMPANY_SIZE_NUMBER})"
    rf"(?:\s*(?:-|–|—|to)\s*(?P<high>{_COMPANY_SIZE_NUMBER})|\s*(?P<plus>\+))?"
    r"(?:\s*employees)?",
    re.ASCII | re.IGNORECASE,
)


class InvalidLeadValue(Unprocessable):
    """A posted lead's field holds a value that has no normal form; ``loc`` is the path within the lead."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}", errors=[{"loc": [field], "msg": message, "type": "value_error"}])
        self.field = field
        self.message = message


def normalise_email(text: str) -> str:
    """Returns the address that identifies one person: valid in syntax (no DNS look-up), lower-cased whole.

    The whole address is lower-cased, the local part too, because the normalised e-mail is the dedupe key and
    senders change case freely; an internationalised domain is kept in Unicode, so its ``xn--`` spelling is the
    same person. Lower-casing can change an address (``İ`` becomes two characters), so the result is validated
    again until it is stable, which makes the rule idempotent.
    """
    address = text.strip().lower()
    if _is_plain_normal_address(address):
        return address
    for _ in range(3):
        normal = _validated_email(address).lower()
        if normal == address:
            return address
        address = normal
    raise InvalidLeadValue("email", "has no stable normal form")


def _is_plain_normal_address(address: str) -> bool:
    """Tells whether an address is one ``email-validator`` accepts unchanged, checking its domain once per domain.

    Most addresses are a lower-case ASCII dot-atom at a domain many others share; for them the answer is the
    full validation's, at a fraction of its cost (the domain's rules are most of it). Any other address, valid
    or not, answers ``False`` and goes through the full validation.
    """
    local_part, at, domain = address.partition("@")
    if not at or len(domain) > MAX_DOMAIN_LENGTH or not _LOWER_ASCII_LOCAL_PART.fullmatch(local_part):
        return False
    forms = _domain_forms(domain)
    if forms is None or forms[0] != domain:
        return False
    ascii_domain = forms[1]
    # The lengths email-validator checks: the address as given (in UTF-8) and with the domain in IDNA ASCII.
    return len(address.encode()) <= MAX_EMAIL_BYTES and len(local_part) + 1 + len(ascii_domain) <= MAX_EMAIL_BYTES


@lru_cache(maxsize=4096)
def _domain_forms(domain: str) -> tuple[str, str] | None:
    """Returns a valid domain's normal form and its IDNA ASCII form, as ``email-validator`` gives them; else ``None``.

    The domain is validated in the shortest address that has it, so its rules are the ones a whole address meets.
    """
    try:
        validated = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return validated.domain, validated.ascii_domain


def _validated_email(address: str) -> str:
    """Returns ``email-validator``'s normal form of an address, refusing it with a message that does not echo it."""
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        raise InvalidLeadValue("email", "is not a valid e-mail address") from None


def normalise_country(text: str) -> str | None:
    """Returns the ISO 3166 alpha-2 code of a country given by code, name or alias; ``None`` for a blank value.

    Known are what ``pycountry`` holds (alpha-2, alpha-3, name, official name, common name, in any case and
    spacing) and ``COUNTRY_ALIASES``; translations such as "Deutschland" and numeric codes are not.
    """
    key = _country_key(text)
    if not key:
        return None
    alpha_2 = _country_index().get(key)
    if alpha_2 is None:
        raise InvalidLeadValue("country", "is not a country name or ISO 3166 code Baton knows")
    return alpha_2


def _country_key(text: str) -> str:
    """Returns the form a country is looked up by: case-folded, spaces collapsed."""
    return " ".join(text.casefold().split())


@cache
def _country_index() -> dict[str, str]:
    """Returns every known spelling of a country, as ``_country_key`` forms it, mapped to its alpha-2 code."""
    index = dict(COUNTRY_ALIASES)
    for country in pycountry.countries:
        for attribute in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            spelling = getattr(country, attribute, None)
            if spelling:
                index[_country_key(spelling)] = country.alpha_2
    return index


def normalise_phone(text: str, *, country: str | None) -> str:
    """Returns a phone number in E.164 when it is a valid number, else the cleaned text as posted.

    A number in international form (``+…``) needs no country; a national one is read in the lead's ``country``
    (alpha-2). The cleaned text (control characters removed, spaces collapsed) is kept when no country is known
    for a national number, the number is not valid in its numbering plan, or it carries an extension, which
    E.164 cannot hold: a doubtful number is kept as the lead wrote it rather than turned into a wrong one.
    """
    return phone_in_e164(clean_phone(text), country=country)


def phone_in_e164(cleaned: str, *, country: str | None) -> str:
    """Returns a number already cleaned by ``clean_phone`` in E.164 when it is a valid number, else as it is."""
    region = country.upper() if country else None
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return cleaned
    if number.extension or not phonenumbers.is_valid_number(number):
        return cleaned
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_phone(text: str) -> str:
    """Returns a posted phone number without control or format characters and with single spaces, or refuses it."""
    # Printable text holds no control or format characters and no whitespace but spaces: nothing to take out.
    visible = text if text.isprintable() else "".join(" " if c.isspace() else c for c in text if not _is_control(c))
    cleaned = " ".join(visible.split())
    if not any(char.isdigit() for char in cleaned):
        raise InvalidLeadValue("phone", "holds no digits")
    if len(cleaned) > MAX_PHONE_LENGTH:
        raise InvalidLeadValue("phone", f"is longer than {MAX_PHONE_LENGTH} characters")
    return cleaned


def _is_control(char: str) -> bool:
    """Tells whether a character is invisible machinery (control, format, unassigned) rather than text."""
    return not char.isspace() and unicodedata.category(char).startswith("C")


def normalise_company_size(value: object) -> int | None:
    """Returns a company's head count as an integer; ``None`` for an absent or blank value.

    Accepted are integers, floats without a fraction, and text such as ``"250"``, ``"1,000"``, a band
    ``"51-200"`` (its lower bound, the size the company is known to have reached) and ``"1000+"``, optionally
    followed by "employees". Booleans, negatives, fractions and sizes over ``MAX_COMPANY_SIZE`` are refused.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidLeadValue("company_size", "must be a number of employees, not true or false")
    if isinstance(value, int):
        return _checked_company_size(value)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidLeadValue("company_size", "must be a whole number of employees")
        return _checked_company_size(int(value))
    if isinstance(value, str):
        return _company_size_from_text(value)
    raise InvalidLeadValue("company_size", "must be a number or text such as 250, 51-200 or 1000+")


def _company_size_from_text(text: str) -> int | None:
    """Returns the head count a posted text states, the lower bound of a band; ``None`` for blank text."""
    stripped = text.strip()
    if not stripped:
        return None
    # Bounded before matching: a head count needs few characters, and the number is parsed with int().
    match = _COMPANY_SIZE.fullmatch(stripped) if len(stripped) <= 64 else None
    if match is None:
        raise InvalidLeadValue("company_size", "must be a number or text such as 250, 51-200 or 1000+")
    low = int(match["low"].replace(",", ""))
    if match["high"] is not None and int(match["high"].replace(",", "")) < low:
        raise InvalidLeadValue("company_size", "is a band whose upper bound is below its lower bound")
    return _checked_company_size(low)


def _checked_company_size(size: int) -> int:
    """Returns a head count that is possible, refusing negatives and absurd sizes."""
    if size < 0:
        raise InvalidLeadValue("company_size", "must not be negative")
    if size > MAX_COMPANY_SIZE:
        raise InvalidLeadValue("company_size", f"must be at most {MAX_COMPANY_SIZE:,}")
    return size
