"""The running system, on the embedded default or on Kafka + PostgreSQL."""

from __future__ import annotations

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
