"""A candidate's identity kept per entry, and ids of any length.

An entry's ``identity`` is its candidate (site and candidate_id), or the entry itself for an error row
whose id is only its position in an input (``line 7``): two such rows from different runs are two
records, never one candidate. The current decision is the identity's latest entry by the time it was
screened (then by entry order), so that importing an older log does not make its decisions current.
Site, candidate_id and position become text of any length (a longer id was cut to 200 characters).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_POSITIONS = ("line ", "index ", "record ")


def identity(site: str, candidate_id: str, decision: str, row_text: str, entry_id: str) -> str:
    """The identity of an entry (the same rule as screening.screen.DuplicateCheck.counts)."""
    if decision == "error" and candidate_id.startswith(_POSITIONS):
        try:
            message = str(json.loads(row_text).get("error", ""))
        except (ValueError, AttributeError):
            message = ""
        if message.startswith(candidate_id + ":"):
            return f"entry:{entry_id}"
    return f"{site}\x1f{candidate_id}"


def upgrade() -> None:
    conn = op.get_bind()
    postgres = conn.dialect.name == "postgresql"
    if postgres:  # SQLite keeps text of any length already (and would have to rebuild the table)
        for column in ("site", "candidate_id", "position"):
            op.alter_column("entries", column, type_=sa.Text, existing_nullable=False)
    op.add_column("entries", sa.Column("identity", sa.Text, nullable=True))
    rows = conn.execute(sa.text("SELECT id, site, candidate_id, decision, row, entry_id FROM entries")).fetchall()
    for row in rows:
        conn.execute(sa.text("UPDATE entries SET identity = :i WHERE id = :id"),
                     {"i": identity(row.site, row.candidate_id, row.decision, row.row, row.entry_id), "id": row.id})
    if postgres:
        op.alter_column("entries", "identity", existing_type=sa.Text, nullable=False)
    op.create_index("ix_entries_identity", "entries", ["identity", "screened_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_entries_identity", "entries")
    op.drop_column("entries", "identity")
