"""Schema steps that several services' Alembic migrations share, written out column by column.

A migration must build the same schema whenever it runs, so these functions never change and never
read the ORM models: a schema change is a new function (``..._v2``) called by a new migration.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def create_messaging_tables_v1(op: Any) -> None:
    """Creates the outbox and the inbox as every service's first migration made them.

    Args:
        op: Alembic's ``op`` module.
    """
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("aggregate_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer_group", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_messaging_tables_v1(op: Any) -> None:
    """Drops what ``create_messaging_tables_v1`` created.

    Args:
        op: Alembic's ``op`` module.
    """
    op.drop_table("inbox")
    op.drop_table("outbox")
