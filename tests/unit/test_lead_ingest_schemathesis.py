"""lead-ingest's OpenAPI, fuzzed by schemathesis in-process: whatever an operation is sent, it answers no server
error, and what it answers fits the response schema it documents.

Each test starts the app with its lifespan on SQLite in tmp_path and reaches it over ASGI. Every request carries an
admin token, so the authorised paths are reached, and the webhook route is called for a url-token source with its
token; cases are drawn both to fit the schema and not to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance

from baton.auth import issue_token
from baton_lead_ingest.app import create_app
from baton_lead_ingest.settings import IngestSettings

SOURCE = "forms"
KNOWN_EMAIL = "ada@example.com"
ADDRESSES = st.sampled_from([KNOWN_EMAIL, "Grace.Hopper+leads@Example.ORG", "ana@exämple.com"])
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/leads"),
    ("POST", "/v1/leads:batch"),
    ("GET", "/v1/leads/{lead_id}"),
    ("POST", "/v1/activities"),
    ("POST", "/v1/leads/{lead_id}:erase"),
    ("POST", "/v1/sources"),
    ("GET", "/v1/sources"),
    ("GET", "/v1/sources/{source}"),
    ("PUT", "/v1/sources/{source}"),
    ("POST", "/v1/sources/{source}:rotate-secret"),
    ("POST", "/v1/sources/{source}/leads"),
    ("GET", "/v1/sources/{source}/leads"),
    ("GET", "/v1/quarantine"),
    ("GET", "/v1/quarantine/{payload_id}"),
    ("POST", "/v1/quarantine/{payload_id}/replay"),
]
Case = schemathesis.Case[schemathesis.APIOperation[Any, Any, Any, Any]]
FUZZING = hypothesis.settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same cases on every run, so that CI is reproducible
    database=None,
    # Cases are drawn from large schemas (a lead, a batch of leads); drawing them slowly is not a failure.
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Fuzzed:
    """A running lead-ingest's OpenAPI, and what a request needs to pass its doors."""

    api: schemathesis.BaseSchema
    headers: dict[str, str]
    webhook_token: str
    lead_id: str


@pytest.fixture
def lead_ingest(tmp_path: Path) -> Iterator[Fuzzed]:
    """lead-ingest running on tmp_path, with a url-token source; its lifespan ends with the test."""
    app = create_app(IngestSettings(data_dir=tmp_path))
    api = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    secret = app.state.runtime.settings.signing_secret()
    admin = {"Authorization": f"Bearer {issue_token(secret, scopes=['admin'], subject='fuzzer')}"}
    try:
        new_source = api["/v1/sources"]["POST"].Case(body={"name": SOURCE, "verification": "url-token"})
        created = new_source.call(headers=admin)
        known = api["/v1/leads"]["POST"].Case(body={"email": KNOWN_EMAIL}).call(headers=admin)
        assert created.status_code == 201, created.text
        assert known.status_code == 202, known.text
        yield Fuzzed(api=api, headers=admin, webhook_token=created.json()["secret"], lead_id=known.json()["lead_id"])
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan ends with the test, its database still there


def test_every_operation_of_the_api_is_fuzzed(lead_ingest: Fuzzed) -> None:
    served = {(method.upper(), path) for path, methods in lead_ingest.api.items() for method in methods}

    assert served == set(OPERATIONS)


def _with_real_addresses(case: Case, addresses: list[str]) -> Case:
    # A generated string is hardly ever an e-mail address; with real ones the leads get stored, not only refused.
    body: Any = case.body
    if isinstance(body, dict):
        leads = body.get("leads")
        bodies: list[Any] = [body, *(leads if isinstance(leads, list) else [])]
        for lead, address in zip(bodies, addresses, strict=False):
            if isinstance(lead, dict) and isinstance(lead.get("email"), str):
                lead["email"] = address
    return case


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation_answers_within_its_schema_and_never_a_server_error(
    lead_ingest: Fuzzed, method: str, path: str
) -> None:
    operation = lead_ingest.api[path][method]
    # Paths also name the source and the lead that exist, so that their handling is reached, not only 404s.
    known = {name: value for name, value in (("source", SOURCE), ("lead_id", lead_ingest.lead_id)) if name in path}
    drawn = [operation.as_strategy(generation_mode=mode) for mode in schemathesis.GenerationMode]
    if known:
        drawn.append(operation.as_strategy(path_parameters=known))
    cases = st.builds(_with_real_addresses, st.one_of(drawn), st.lists(ADDRESSES, max_size=3))

    @FUZZING
    @hypothesis.given(case=cases)
    def fuzz(case: Case) -> None:
        case.call_and_validate(
            headers=lead_ingest.headers,
            params={"token": lead_ingest.webhook_token},
            checks=[not_a_server_error, response_schema_conformance],
        )

    fuzz()
