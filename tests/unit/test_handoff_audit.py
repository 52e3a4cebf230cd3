"""handoff's audit log: record_change writes with the caller's transaction, GET /v1/audit serves it to admins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.auth import Principal, issue_token
from baton_handoff.audit import record_change
from baton_handoff.settings import HandoffSettings
from tests.unit.conftest import assert_problem
from tests.unit.test_handoff_api import Handoff, running_handoff

AT = datetime(2030, 6, 3, 8, 0, tzinfo=UTC)
ADMIN = Principal(subject="ops-admin", scopes=frozenset({"admin"}))


@pytest.fixture
async def handoff(tmp_path: Path) -> AsyncIterator[Handoff]:
    async with running_handoff(HandoffSettings(data_dir=tmp_path)) as service:
        yield service


async def record(handoff: Handoff, *changes: dict[str, Any]) -> None:
    """Records changes one after another in one committed transaction."""
    async with handoff.runtime.sessions() as session, session.begin():
        for change in changes:
            await record_change(session, **{"principal": ADMIN, "before": None, "after": None, "now": AT, **change})


async def audit(handoff: Handoff, **params: str) -> dict[str, Any]:
    answer = await handoff.client.get("/v1/audit", params=params, headers=handoff.admin)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_recorded_change_is_served_with_its_actor_and_both_states(handoff: Handoff) -> None:
    lead = Principal(subject="lead-emea", scopes=frozenset({"assignments:write"}), team="emea")
    await record(
        handoff,
        {
            "principal": lead,
            "action": "update",
            "entity": "rep",
            "entity_id": "rep-ana",
            "before": {"capacity": 20, "email": "ana@example.com"},
            "after": {"capacity": 25, "email": "ana@example.com", "ooo_until": AT + timedelta(days=1)},
        },
    )

    [entry] = (await audit(handoff))["items"]

    assert entry["at"] == "2030-06-03T08:00:00Z"
    assert (entry["actor"], entry["actor_rep_id"], entry["actor_team"]) == ("lead-emea", None, "emea")
    assert (entry["action"], entry["entity"], entry["entity_id"]) == ("update", "rep", "rep-ana")
    assert entry["before"] == {"capacity": 20, "email": "ana@example.com"}
    assert entry["after"] == {"capacity": 25, "email": "ana@example.com", "ooo_until": "2030-06-04T08:00:00Z"}


async def test_secrets_are_never_stored_in_the_audit_log(handoff: Handoff) -> None:
    await record(
        handoff,
        {
            "action": "create",
            "entity": "webhook",
            "entity_id": "emea",
            "after": {"url": "https://crm.example/hook", "secret": "whsec_abc", "auth": {"signing_secret": "s3"}},
        },
    )

    [entry] = (await audit(handoff))["items"]

    assert entry["after"] == {"url": "https://crm.example/hook", "auth": {}}
    assert "whsec_abc" not in str(entry) and "s3" not in str(entry["after"])


async def test_a_change_rolled_back_with_its_transaction_leaves_no_audit_entry(handoff: Handoff) -> None:
    with pytest.raises(RuntimeError):
        async with handoff.runtime.sessions() as session, session.begin():
            await record_change(
                session,
                principal=ADMIN,
                action="delete",
                entity="account",
                entity_id="example.com",
                before={"domain": "example.com"},
                after=None,
                now=AT,
            )
            raise RuntimeError("the change failed")

    assert (await audit(handoff))["items"] == []


async def test_audit_pages_run_newest_first_and_filter_by_entity_and_id(handoff: Handoff) -> None:
    await record(
        handoff,
        *(
            {"action": "create", "entity": entity, "entity_id": entity_id}
            for entity, entity_id in [
                ("rep", "rep-ana"),
                ("account", "example.com"),
                ("rep", "rep-ben"),
                ("rep", "rep-ana"),
                ("routing_rule", "emea"),
            ]
        ),
    )

    pages: list[list[tuple[str, str]]] = []
    cursor: str | None = None
    while True:
        page = await audit(handoff, limit="2", **({"cursor": cursor} if cursor else {}))
        pages.append([(e["entity"], e["entity_id"]) for e in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    reps = await audit(handoff, entity="rep")
    anas = await audit(handoff, entity="rep", entity_id="rep-ana")

    assert pages == [
        [("routing_rule", "emea"), ("rep", "rep-ana")],
        [("rep", "rep-ben"), ("account", "example.com")],
        [("rep", "rep-ana")],
    ]
    assert [e["entity_id"] for e in reps["items"]] == ["rep-ana", "rep-ben", "rep-ana"]
    assert len(anas["items"]) == 2 and {e["entity_id"] for e in anas["items"]} == {"rep-ana"}


async def test_the_audit_log_is_for_admins_only(handoff: Handoff) -> None:
    await record(handoff, {"action": "create", "entity": "rep", "entity_id": "rep-ana", "after": {"name": "Ana"}})

    nobody = await handoff.client.get("/v1/audit")
    lead = await handoff.client.get("/v1/audit", headers=handoff.token("assignments:read", team="emea"))

    assert_problem(nobody, 401)
    assert "Ana" not in assert_problem(lead, 403)["detail"]


@pytest.mark.parametrize(("param", "value"), [("entity", "lead"), ("cursor", "-1"), ("cursor", "9" * 12)])
async def test_a_bad_filter_or_cursor_answers_422_naming_it(handoff: Handoff, param: str, value: str) -> None:
    answer = await handoff.client.get("/v1/audit", params={param: value}, headers=handoff.admin)

    assert param in str(assert_problem(answer, 422))


async def test_an_unknown_entity_or_action_is_refused_when_recording(handoff: Handoff) -> None:
    async with handoff.runtime.sessions() as session:
        with pytest.raises(ValueError, match="entity"):
            await record_change(
                session, principal=ADMIN, action="create", entity="lead", entity_id="x", before=None, after={}, now=AT
            )


async def test_admin_changes_to_a_rep_are_audited_with_who_made_them_and_what_changed(handoff: Handoff) -> None:
    token = issue_token(handoff.runtime.signing_secret, scopes=["admin"], subject="ops-alice")
    admin = {"Authorization": f"Bearer {token}"}
    rep = {"rep_id": "rep-ana", "name": "Ana", "email": "ana@reps.example", "team": "emea", "capacity": 20}
    assert (await handoff.client.post("/v1/reps", json=rep, headers=admin)).status_code == 201
    assert (await handoff.client.patch("/v1/reps/rep-ana", json={"capacity": 25}, headers=admin)).status_code == 200
    assert (await handoff.client.delete("/v1/reps/rep-ana", headers=admin)).status_code == 204

    entries = (await audit(handoff, entity="rep", entity_id="rep-ana"))["items"]

    assert [e["action"] for e in entries] == ["delete", "update", "create"]
    deleted, updated, created = entries
    assert created["before"] is None and created["after"]["email"] == "ana@reps.example"
    assert (updated["before"]["capacity"], updated["after"]["capacity"]) == (20, 25)
    assert deleted["before"]["capacity"] == 25 and deleted["after"] is None
    assert {e["actor"] for e in entries} == {"ops-alice"}


async def test_a_webhooks_secret_never_reaches_the_audit_log(handoff: Handoff) -> None:
    await handoff.add_reps({"rep_id": "rep-ana", "name": "Ana", "team": "emea"})
    created = await handoff.client.put(
        "/v1/webhooks/emea", json={"url": "https://crm.example/hooks/baton"}, headers=handoff.admin
    )
    assert created.status_code == 201, created.text
    rotated = await handoff.client.post("/v1/webhooks/emea:rotate-secret", headers=handoff.admin)
    assert rotated.status_code == 200, rotated.text

    entries = (await audit(handoff, entity="webhook"))["items"]

    assert len(entries) >= 2
    for secret in (created.json()["secret"], rotated.json()["secret"]):
        assert secret not in str(entries)
