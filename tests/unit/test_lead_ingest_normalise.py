"""lead-ingest's normalisation of e-mail, country, phone and company size: examples per rule and properties."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pycountry
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.errors import Unprocessable
from baton_lead_ingest.normalise import (
    InvalidLeadValue,
    normalise_company_size,
    normalise_country,
    normalise_email,
    normalise_phone,
)

PROPERTIES = settings(max_examples=200, deadline=None)
COUNTRIES = sorted(pycountry.countries, key=lambda country: country.alpha_2)
PHONE_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def refusal(call: Any, *args: Any, **kwargs: Any) -> InvalidLeadValue:
    """Returns the error a rule raises for a value, failing the test if it accepts it."""
    with pytest.raises(InvalidLeadValue) as refused:
        call(*args, **kwargs)
    return refused.value


# e-mail


@pytest.mark.parametrize(
    ("posted", "normal"),
    [
        ("Jane.Doe@Example.COM", "jane.doe@example.com"),
        ("  jane@example.com\n", "jane@example.com"),
        ("JANE+news@Sub.Example.co.uk", "jane+news@sub.example.co.uk"),
        ("jane@xn--mnchen-3ya.de", "jane@münchen.de"),
        ("Jane@MÜNCHEN.de", "jane@münchen.de"),
        ("Ünal@Bücher.de", "ünal@bücher.de"),
    ],
)
def test_email_is_validated_and_lower_cased_whole(posted: str, normal: str) -> None:
    assert normalise_email(posted) == normal


def test_punycode_and_unicode_domains_are_the_same_person() -> None:
    assert normalise_email("Jane@xn--bcher-kva.de") == normalise_email("jane@BÜCHER.de")


@pytest.mark.parametrize(
    "posted",
    [
        "jane\x00@example.com",
        "jane@exa\x00mple.com",
        "a@b..com",
        "a" * 300 + "@example.com",
        "jane@" + "a" * 250 + ".com",
        "",
        "   ",
        "jane",
        "jane@",
        "@example.com",
        "jane@localhost",
        "jane@@example.com",
        "Jane Doe <jane@example.com>",
        "jane@[127.0.0.1]",
        "jane@example.com; DROP TABLE leads",
    ],
)
def test_email_that_is_not_an_address_is_refused_naming_the_field(posted: str) -> None:
    error = refusal(normalise_email, posted)

    assert error.field == "email"
    assert error.extensions["errors"] == [{"loc": ["email"], "msg": error.message, "type": "value_error"}]


def test_refusal_does_not_repeat_the_posted_value_and_answers_422() -> None:
    error = refusal(normalise_email, "secret.person@b..com")

    assert isinstance(error, Unprocessable)
    assert error.status == 422
    assert "secret.person" not in error.detail
    assert "secret.person" not in error.message


def test_lower_casing_that_changes_the_address_still_gives_a_stable_valid_one() -> None:
    normal = normalise_email("İlkay@example.com")

    assert normal == "i̇lkay@example.com"
    assert normalise_email(normal) == normal


# country


@pytest.mark.parametrize(
    ("posted", "alpha_2"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        ("  germany ", "DE"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("uk", "GB"),
        ("GBR", "GB"),
        ("USA", "US"),
        ("United States", "US"),
        ("United   States of America", "US"),
        ("Taiwan", "TW"),
        ("Korea, Republic of", "KR"),
        ("Bolivia, Plurinational State of", "BO"),
        ("Bolivia", "BO"),
        ("Czechia", "CZ"),
    ],
)
def test_country_codes_names_and_aliases_become_alpha_2(posted: str, alpha_2: str) -> None:
    assert normalise_country(posted) == alpha_2


@pytest.mark.parametrize("posted", ["", "   ", "\t\n"])
def test_blank_country_is_absent(posted: str) -> None:
    assert normalise_country(posted) is None


@pytest.mark.parametrize("posted", ["Deutschland", "Atlantis", "XX", "ZZZ", "276", "D E", "U.S.A."])
def test_unknown_country_is_refused_naming_the_field(posted: str) -> None:
    error = refusal(normalise_country, posted)

    assert error.field == "country"
    assert posted not in error.message


@PROPERTIES
@given(st.sampled_from(COUNTRIES))
def test_every_country_pycountry_knows_is_found_by_each_of_its_spellings(country: Any) -> None:
    assert normalise_country(country.alpha_2) == country.alpha_2
    assert normalise_country(country.alpha_2.lower()) == country.alpha_2
    assert normalise_country(country.alpha_3) == country.alpha_2
    assert normalise_country(country.name.upper()) == country.alpha_2


def test_alpha_2_of_every_country_is_its_own_normal_form() -> None:
    assert [normalise_country(country.alpha_2) for country in COUNTRIES] == [c.alpha_2 for c in COUNTRIES]


# phone


@pytest.mark.parametrize(
    ("posted", "country", "e164"),
    [
        ("+1 (415) 555-2671", None, "+14155552671"),
        ("+1 415 555 2671", "DE", "+14155552671"),
        ("030 1234567", "DE", "+49301234567"),
        ("030 1234567", "de", "+49301234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("0049 30 1234567", "DE", "+49301234567"),
        ("+49\u00a030\u200b1234567", None, "+49301234567"),
        ("call 030\x00 1234567", "DE", "+49301234567"),
    ],
)
def test_valid_phone_becomes_e164(posted: str, country: str | None, e164: str) -> None:
    assert normalise_phone(posted, country=country) == e164


@pytest.mark.parametrize(
    ("posted", "country", "kept"),
    [
        ("030 1234567", None, "030 1234567"),
        ("030  1234567\t", "XX", "030 1234567"),
        ("+1 415 555 2671 ext. 12", None, "+1 415 555 2671 ext. 12"),
        ("12", "DE", "12"),
        ("+999 1234", None, "+999 1234"),
        ("\x00 030\u200b\n12 ", "DE", "030 12"),
    ],
)
def test_phone_that_cannot_be_e164_is_kept_cleaned(posted: str, country: str | None, kept: str) -> None:
    assert normalise_phone(posted, country=country) == kept


@pytest.mark.parametrize("posted", ["", "  ", "none", "\x00\x01", "1" * 65])
def test_phone_without_digits_or_too_long_is_refused_naming_the_field(posted: str) -> None:
    assert refusal(normalise_phone, posted, country="DE").field == "phone"


@st.composite
def valid_phone_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """Draws a valid number of some region, written as a person might post it, with that region."""
    region = draw(st.sampled_from(PHONE_REGIONS))
    number_type = draw(st.sampled_from([phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]))
    number = phonenumbers.example_number_for_type(region, number_type) or phonenumbers.example_number(region)
    assert number is not None
    written = draw(
        st.sampled_from(
            [
                phonenumbers.PhoneNumberFormat.E164,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
            ]
        )
    )
    return phonenumbers.format_number(number, written), region


@PROPERTIES
@given(valid_phone_numbers())
def test_valid_phone_results_start_with_plus_and_parse_back_to_the_same_number(posted: tuple[str, str]) -> None:
    text, region = posted
    original = phonenumbers.parse(text, region)

    normal = normalise_phone(text, country=region)

    assert normal.startswith("+")
    assert phonenumbers.parse(normal, None) == original
    assert normalise_phone(normal, country=None) == normal


# company size


@pytest.mark.parametrize(
    ("posted", "size"),
    [
        (0, 0),
        (250, 250),
        (10_000_000, 10_000_000),
        (250.0, 250),
        ("250", 250),
        (" 250 ", 250),
        ("1,000", 1000),
        ("51-200", 51),
        ("51 - 200", 51),
        ("51–200", 51),
        ("51 to 200", 51),
        ("1000+", 1000),
        ("10,001+", 10001),
        ("201-500 employees", 201),
        ("5 Employees", 5),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_company_size_becomes_an_integer_a_band_its_lower_bound(posted: object, size: int | None) -> None:
    assert normalise_company_size(posted) == size


@pytest.mark.parametrize(
    "posted",
    [
        True,
        False,
        -1,
        "-5",
        10_000_001,
        "10000001",
        "20,000,000+",
        2.5,
        "2.5",
        float("nan"),
        float("inf"),
        "200-51",
        "1,00",
        "many",
        "５０",
        [50],
        {"size": 50},
    ],
)
def test_impossible_company_size_is_refused_naming_the_field(posted: object) -> None:
    assert refusal(normalise_company_size, posted).field == "company_size"


# properties over arbitrary input


@PROPERTIES
@given(st.emails())
def test_email_normal_form_is_idempotent_on_generated_addresses(posted: str) -> None:
    try:
        normal = normalise_email(posted)
    except InvalidLeadValue:
        return
    assert normalise_email(normal) == normal
    assert normal == normal.lower()


DOMAINS = [
    "example.com",
    "Sub.Example.CO.UK",
    "xn--bcher-kva.de",
    "BÜCHER.de",
    "münchen.de",
    "localhost",
    "example.invalid",
    "a..com",
    "-a.com",
    "exa mple.com",
    "[127.0.0.1]",
    "e" * 64 + ".com",
    ("e" * 63 + ".") * 3 + "com",
    "x@y.com",
]


@PROPERTIES
@given(
    st.text(alphabet="aZ09.!#$%&'*+/=?^_`{|}~-\"@ (),:;<>[]\\\x00é", min_size=0, max_size=70)
    | st.emails().map(lambda address: address.partition("@")[0]),
    st.sampled_from(DOMAINS),
    st.sampled_from(["", " ", "\t"]),
)
def test_email_normal_form_is_the_lower_cased_one_email_validator_gives(local: str, domain: str, space: str) -> None:
    address = f"{space}{local}@{domain}{space}"
    try:
        expected = validate_email(address.strip().lower(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        assert refusal(normalise_email, address).field == "email"
        assert refusal(normalise_email, address).field == "email"  # the second time, its domain is known
        return

    assert normalise_email(address) == expected
    assert normalise_email(address) == expected


@PROPERTIES
@given(st.text(max_size=80).map(lambda local: local + "@Example.com") | st.text(max_size=120))
def test_email_normal_form_is_idempotent_on_arbitrary_text(posted: str) -> None:
    try:
        normal = normalise_email(posted)
    except InvalidLeadValue:
        return
    assert normalise_email(normal) == normal


@PROPERTIES
@given(st.text(max_size=300), st.sampled_from([None, "DE", "us", "XX", "", *PHONE_REGIONS[:20]]))
def test_rules_raise_nothing_but_their_own_error_on_arbitrary_text(text: str, country: str | None) -> None:
    for rule in (normalise_email, normalise_country, normalise_company_size):
        try:
            rule(text)
        except InvalidLeadValue:
            pass
    try:
        normalise_phone(text, country=country)
    except InvalidLeadValue:
        pass


@PROPERTIES
@given(st.integers(min_value=0, max_value=10_000_000))
def test_company_size_keeps_every_possible_head_count(size: int) -> None:
    assert normalise_company_size(size) == size
    assert normalise_company_size(str(size)) == size
    assert normalise_company_size(f"{size:,}") == size
    assert normalise_company_size(f"{size}+") == size


@PROPERTIES
@given(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80) | st.lists(st.integers()))
def test_company_size_raises_nothing_but_its_own_error_on_any_value(posted: object) -> None:
    try:
        size = normalise_company_size(posted)
    except InvalidLeadValue:
        return
    assert size is None or 0 <= size <= 10_000_000
