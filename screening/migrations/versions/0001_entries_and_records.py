"""The first screening log: entries (one decision each, never updated) and the input records apart.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(36), nullable=False, unique=True),
        sa.Column("site", sa.String(200), nullable=False),
        sa.Column("candidate_id", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("subcategory", sa.String(100)),
        sa.Column("primary_criterion", sa.String(40)),
        sa.Column("screening_start", sa.Date),
        sa.Column("row", sa.Text, nullable=False),
        sa.Column("pack", sa.String(100), nullable=False),
        sa.Column("set_name", sa.String(100), nullable=False),
        sa.Column("set_version", sa.String(40), nullable=False),
        sa.Column("set_sha256", sa.String(64), nullable=False),
        sa.Column("tool_version", sa.String(40), nullable=False),
        sa.Column("input_sha256", sa.String(64)),
        sa.Column("screened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("screener", sa.String(200), nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("position", sa.String(100), nullable=False),
    )
    op.create_table(  # the input record, apart: an erasure clears body and leaves the entry
        "records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(36), sa.ForeignKey("entries.entry_id"), nullable=False, unique=True),
        sa.Column("input_sha256", sa.String(64)),
        sa.Column("body", sa.Text),
        sa.Column("erased_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("records")
    op.drop_table("entries")
