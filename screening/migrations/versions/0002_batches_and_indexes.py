"""Batches (who ran what, with which nlc-screen) and the indexes a candidate's lookups need.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(36), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("screener", sa.String(200), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("tool_version", sa.String(40), nullable=False),
    )
    # the batches of entries logged at revision 0001: one line each, from what the entries say
    op.execute(
        "INSERT INTO batches (batch_id, started_at, screener, source, tool_version) "
        "SELECT batch_id, MIN(screened_at), MIN(screener), 'logged before batches were kept', MIN(tool_version) "
        "FROM entries GROUP BY batch_id"
    )
    op.create_index("ix_entries_candidate", "entries", ["site", "candidate_id", "id"])
    op.create_index("ix_entries_category", "entries", ["category"])
    op.create_index("ix_entries_batch", "entries", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_entries_batch", "entries")
    op.drop_index("ix_entries_category", "entries")
    op.drop_index("ix_entries_candidate", "entries")
    op.drop_table("batches")
