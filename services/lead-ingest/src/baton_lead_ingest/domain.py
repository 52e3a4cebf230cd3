"""lead-ingest's rules, free of I/O: who a post is about, what a repeat post changes, how large input may be."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "country",
    "company_size",
    "industry",
    "source",
    "campaign",
    "external_id",
)
"""The fields a later post of the same person may change; ``utm`` merges key by key."""

# Limits keep the largest valid lead's event far below what the bus carries (about 1 MiB):
# every string at its maximum, in characters JSON escapes to six bytes, stays under 200 KiB.
MAX_UTM_KEYS = 20
MAX_UTM_KEY_LENGTH = 64
MAX_UTM_VALUE_LENGTH = 300
MAX_ACTIVITIES = 50
MAX_ACTIVITY_TYPE_LENGTH = 64
MAX_PROPERTIES_BYTES = 2048
MAX_PROPERTIES_DEPTH = 5
MAX_BATCH_LEADS = 1000


def merged_utm(stored: Mapping[str, str], incoming: Mapping[str, str]) -> dict[str, str]:
    """Returns a lead's UTM parameters after a post: the post's keys win, and the set stays within the limit.

    When stored and posted keys together exceed ``MAX_UTM_KEYS``, the post's parameters replace the
    stored ones (the latest touch), so a lead posted again and again cannot grow without bound.
    """
    merged = {**stored, **incoming}
    return merged if len(merged) <= MAX_UTM_KEYS else dict(incoming)


def changed_fields(stored: Mapping[str, Any], incoming: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the profile fields a repeat post brings that differ from what is stored; absent ones change nothing."""
    changes = {
        name: incoming[name]
        for name in PROFILE_FIELDS
        if incoming.get(name) is not None and incoming[name] != stored.get(name)
    }
    stored_utm = stored.get("utm") or {}
    utm = merged_utm(stored_utm, incoming.get("utm") or {})
    if utm != stored_utm:
        changes["utm"] = utm
    return changes


@dataclass(frozen=True)
class LeadPost:
    """One posted lead, as the rules see it: who it is about, its profile fields and ``utm``, and when it came."""

    email_normalized: str
    profile: Mapping[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class StoredLead:
    """A lead already held: its id and profile fields (with ``utm``)."""

    lead_id: str
    profile: Mapping[str, Any]


@dataclass(frozen=True)
class PostOutcome:
    """What became of one post: the lead it is, whether it merged into a known one, and what it changed."""

    lead_id: str
    duplicate: bool
    changes: Mapping[str, Any]


@dataclass(frozen=True)
class MergedLead:
    """A lead's profile after every post merged into it, and the time of the last of them."""

    lead_id: str
    profile: Mapping[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class Settlement:
    """What a sequence of posts does: one outcome per post, in order, and the known leads to update."""

    outcomes: list[PostOutcome]
    merged: list[MergedLead]


def settle_posts(
    posts: Sequence[LeadPost], *, created: Mapping[str, str], stored: Mapping[str, StoredLead]
) -> Settlement:
    """Decides, post by post in order, which posts are new people and what each later post of a person changes.

    Args:
        posts: The posts, in the order they arrived.
        created: Normalised e-mail to the id of the lead just created from the first post about that person.
        stored: Normalised e-mail to the lead held before these posts, for every other person posted.

    Returns:
        One outcome per post and, per lead that a post merged into, its resulting profile.

    Raises:
        KeyError: A post is about someone neither just created nor stored.
    """
    current: dict[str, StoredLead] = {}
    touched: dict[str, datetime] = {}
    outcomes: list[PostOutcome] = []
    for post in posts:
        email = post.email_normalized
        known = current.get(email)
        if known is None and email in created:
            current[email] = StoredLead(created[email], post.profile)
            outcomes.append(PostOutcome(lead_id=created[email], duplicate=False, changes={}))
            continue
        known = known or stored[email]
        changes = changed_fields(known.profile, post.profile)
        current[email] = StoredLead(known.lead_id, {**known.profile, **changes})
        touched[email] = post.received_at
        outcomes.append(PostOutcome(lead_id=known.lead_id, duplicate=True, changes=changes))
    merged = [MergedLead(current[email].lead_id, current[email].profile, at) for email, at in touched.items()]
    return Settlement(outcomes=outcomes, merged=merged)


def request_fingerprint(route: str, body: Any) -> str:
    """Returns the SHA-256 of a request's canonical JSON (keys sorted, no spaces, ASCII), naming its route.

    Two requests with the same meaning (keys in another order, other spacing) have the same fingerprint;
    ASCII escapes give any parsed body, even one holding a lone surrogate, one encoding.
    """
    canonical = json.dumps([route, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Tells whether JSON nests objects and arrays more than ``limit`` deep (the outermost one is depth 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_size(value: Any) -> int:
    """Returns the bytes of a JSON value's compact UTF-8 encoding.

    Raises:
        ValueError: The value holds NaN or an infinity, which JSON cannot carry.
    """
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return len(encoded.encode(errors="surrogatepass"))
