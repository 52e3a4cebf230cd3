"""The ``baton`` command's token minting."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.auth import verify_token
from baton.cli import main
from baton.settings import Settings


def test_token_issue_signs_with_the_secret_the_services_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path))

    assert main(["token", "issue", "--scope", "assignments:read,assignments:write", "--rep", "rep-7"]) == 0

    token = capsys.readouterr().out.strip()
    principal = verify_token(Settings(data_dir=tmp_path).signing_secret(), token)
    assert principal.scopes == {"assignments:read", "assignments:write"}
    assert principal.rep_id == "rep-7"


def test_token_issue_refuses_an_unknown_scope_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path))

    assert main(["token", "issue", "--scope", "superuser"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "superuser" in captured.err and "metrics:read" in captured.err
