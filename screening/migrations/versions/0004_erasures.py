"""Erasures: a tombstone for each candidate whose input records were cleared.

``nlc-screen log erase`` clears a candidate's input records (``records.body``) and the values its
decision rows quote, keeping every entry's decision, category, criteria statuses and stamps, so that
counts stay reproducible. The erasure itself is kept here: when, who, why, and how many entries it
touched; each cleared record names its erasure.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("erasure_id", sa.String(36), primary_key=True),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("candidate_id", sa.Text, nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
    )
    op.create_index("ix_erasures_identity", "erasures", ["identity"])
    op.add_column("records", sa.Column("erasure_id", sa.String(36), nullable=True))


def downgrade() -> None:
    op.drop_column("records", "erasure_id")
    op.drop_index("ix_erasures_identity", "erasures")
    op.drop_table("erasures")
