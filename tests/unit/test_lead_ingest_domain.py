"""lead-ingest's rules: who a post is about, what a repeat post changes, request fingerprints, input size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from baton_lead_ingest.domain import (
    MAX_UTM_KEYS,
    LeadPost,
    MergedLead,
    PostOutcome,
    StoredLead,
    changed_fields,
    json_depth_exceeds,
    json_size,
    merged_utm,
    request_fingerprint,
    settle_posts,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def profile(**fields: Any) -> dict[str, Any]:
    return {"first_name": None, "title": None, "company": None, "utm": {}, **fields}


def test_repeat_post_changes_only_the_fields_it_brings_that_differ() -> None:
    stored = profile(first_name="Jane", title="CMO", company="Acme")
    incoming = profile(first_name="Jane", title="CEO", company=None)

    assert changed_fields(stored, incoming) == {"title": "CEO"}


def test_repeat_post_with_the_stored_values_changes_nothing() -> None:
    stored = profile(first_name="Jane", utm={"utm_source": "ads"})

    assert changed_fields(stored, profile(first_name="Jane", utm={"utm_source": "ads"})) == {}


def test_utm_merges_key_by_key_and_the_post_wins() -> None:
    stored = profile(utm={"utm_source": "ads", "utm_medium": "cpc"})

    changes = changed_fields(stored, profile(utm={"utm_medium": "email", "utm_campaign": "spring"}))

    assert changes == {"utm": {"utm_source": "ads", "utm_medium": "email", "utm_campaign": "spring"}}


def test_utm_that_would_outgrow_the_limit_is_replaced_by_the_posts() -> None:
    stored = {f"stored_{n}": "x" for n in range(MAX_UTM_KEYS)}
    posted = {"utm_source": "webinar"}

    assert merged_utm(stored, posted) == posted
    assert len(merged_utm(dict(list(stored.items())[:-1]), posted)) == MAX_UTM_KEYS


def test_first_post_of_a_new_person_creates_the_lead_and_the_next_merges_into_it() -> None:
    posts = [
        LeadPost("jane@example.com", profile(title="CMO"), T0),
        LeadPost("jane@example.com", profile(title="CEO", company="Acme"), T0 + timedelta(seconds=1)),
    ]

    settlement = settle_posts(posts, created={"jane@example.com": "lead-1"}, stored={})

    assert settlement.outcomes == [
        PostOutcome(lead_id="lead-1", duplicate=False, changes={}),
        PostOutcome(lead_id="lead-1", duplicate=True, changes={"title": "CEO", "company": "Acme"}),
    ]
    assert settlement.merged == [
        MergedLead(lead_id="lead-1", profile=profile(title="CEO", company="Acme"), updated_at=T0 + timedelta(seconds=1))
    ]


def test_posts_of_a_known_person_each_change_what_the_one_before_left() -> None:
    stored = {"jane@example.com": StoredLead("lead-1", profile(title="CMO"))}
    posts = [
        LeadPost("jane@example.com", profile(title="CEO"), T0),
        LeadPost("jane@example.com", profile(title="CEO", first_name="Jane"), T0 + timedelta(seconds=2)),
    ]

    settlement = settle_posts(posts, created={}, stored=stored)

    assert [outcome.changes for outcome in settlement.outcomes] == [{"title": "CEO"}, {"first_name": "Jane"}]
    assert all(outcome.duplicate and outcome.lead_id == "lead-1" for outcome in settlement.outcomes)
    assert settlement.merged == [
        MergedLead(
            lead_id="lead-1", profile=profile(title="CEO", first_name="Jane"), updated_at=T0 + timedelta(seconds=2)
        )
    ]


def test_new_people_are_not_merged_and_leave_nothing_to_update() -> None:
    posts = [LeadPost("ann@example.com", profile(), T0), LeadPost("ben@example.com", profile(), T0)]

    settlement = settle_posts(posts, created={"ann@example.com": "a", "ben@example.com": "b"}, stored={})

    assert [(o.lead_id, o.duplicate) for o in settlement.outcomes] == [("a", False), ("b", False)]
    assert settlement.merged == []


def test_fingerprint_ignores_key_order_but_not_values_or_route() -> None:
    body = {"email": "jane@example.com", "utm": {"a": "1", "b": "2"}}
    reordered = {"utm": {"b": "2", "a": "1"}, "email": "jane@example.com"}

    assert request_fingerprint("/leads", body) == request_fingerprint("/leads", reordered)
    assert request_fingerprint("/leads", body) != request_fingerprint("/leads", {**body, "email": "ann@example.com"})
    assert request_fingerprint("/leads", body) != request_fingerprint("/leads:batch", body)


def test_fingerprint_of_a_body_with_a_lone_surrogate_is_stable() -> None:
    assert request_fingerprint("/leads", ["\ud800"]) == request_fingerprint("/leads", ["\ud800"])
    assert request_fingerprint("/leads", ["\ud800"]) != request_fingerprint("/leads", ["\ud801"])


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        ({}, 1, False),
        ({"a": 1}, 1, False),
        ({"a": {"b": 1}}, 1, True),
        ({"a": [{"b": [1]}]}, 4, False),
        ({"a": [{"b": [1]}]}, 3, True),
        ({"a": [[], [[[]]]]}, 4, True),
        ("just a string", 1, False),
    ],
)
def test_json_depth_counts_nested_objects_and_arrays(value: Any, limit: int, exceeds: bool) -> None:
    assert json_depth_exceeds(value, limit) is exceeds


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_json_size_refuses_numbers_json_cannot_carry(number: float) -> None:
    with pytest.raises(ValueError):
        json_size({"ratio": number})


def test_json_size_is_the_compact_utf8_encoding() -> None:
    assert json_size({"a": [1, 2]}) == len('{"a":[1,2]}')
    assert json_size({"é": "\x01"}) == len('{"é":"\\u0001"}'.encode())
