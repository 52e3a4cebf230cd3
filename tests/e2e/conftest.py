"""The running system, on the embedded default or on Kafka + PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system import RunningSystem
from tests.system import embedded_system as start_embedded
from tests.system import kafka_system as start_kafka


@pytest.fixture
def embedded_system(tmp_path: Path) -> Iterator[RunningSystem]:
    """``baton run`` on the embedded default, as `make run` starts it."""
    with start_embedded(tmp_path) as system:
        yield system
    assert system.exit_codes == [0], "baton run did not stop cleanly on Ctrl-C"


@pytest.fixture
def kafka_system(tmp_path: Path, unique_name: str) -> Iterator[RunningSystem]:
    """The four services as four processes on the real Kafka and PostgreSQL."""
    with start_kafka(tmp_path, unique_name) as system:
        yield system
    assert system.exit_codes == [0, 0, 0, 0], "a service did not stop cleanly on SIGINT"


@pytest.fixture(scope="module")
def module_kafka_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """The four services on the real Kafka and PostgreSQL, started once for every test of a module.

    Its databases are ``{name}_{service database}`` and its topics ``{name}.{topic}``, where ``name`` is
    ``system.env["BATON_KAFKA_TOPIC_PREFIX"]`` without its final dot. Ports from 18501, clear of the
    function-scoped system's.
    """
    name = "t" + secrets.token_hex(4)
    with start_kafka(tmp_path_factory.mktemp(name), name, base_port=18501) as system:
        yield system
    assert system.exit_codes == [0, 0, 0, 0], "a service did not stop cleanly on SIGINT"
