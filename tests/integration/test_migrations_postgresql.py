"""Each service's migrations build exactly the schema its models describe on PostgreSQL, and take it all down again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from baton.db import create_engine
from tests.unit.test_migrations import SERVICE_PACKAGES, check_migrations_round_trip

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
async def test_migrations_build_the_models_schema_and_take_it_all_down_on_postgresql(
    fresh_database: Callable[[str], Awaitable[str]], package: str
) -> None:
    engine = create_engine(await fresh_database(package))
    try:
        await check_migrations_round_trip(engine, package)
    finally:
        await engine.dispose()
