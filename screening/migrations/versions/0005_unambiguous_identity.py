"""A candidate's identity as a JSON array of its site and id, unambiguous whatever they hold.

Up to 0004 an identity was ``site + "\\x1f" + candidate_id``. Site and candidate_id may hold control
characters, so two different candidates could share an identity — site ``A``, id ``B\\x1fC`` and site
``A\\x1fB``, id ``C`` — and be counted as one, and an erasure of one cleared the other's records. An
identity is now the JSON array ``["site","candidate_id"]`` (compact, non-ASCII kept as it is); an
error row identified only by its position keeps ``entry:<entry_id>``. Every entry's and every
tombstone's identity is recomputed from its own ``site`` and ``candidate_id`` columns, which were
always kept apart. (An erasure made before this revision that cleared two such candidates cannot be
undone here: its tombstone names the one requested.)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def identity(site: str, candidate_id: str) -> str:
    """The identity of a candidate (the same rule as screening.log._identity_of)."""
    return json.dumps([site, candidate_id], ensure_ascii=False, separators=(",", ":"))


def _recompute(table: str, key: str, *, keep_entry_ids: bool) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"SELECT {key}, site, candidate_id, identity FROM {table}")).fetchall()
    for row in rows:
        if keep_entry_ids and row.identity.startswith("entry:"):
            continue
        new = identity(row.site, row.candidate_id)
        if new != row.identity:
            conn.execute(sa.text(f"UPDATE {table} SET identity = :i WHERE {key} = :k"), {"i": new, "k": row[0]})


def upgrade() -> None:
    _recompute("entries", "id", keep_entry_ids=True)
    _recompute("erasures", "erasure_id", keep_entry_ids=False)


def downgrade() -> None:
    conn = op.get_bind()
    for table, key in (("entries", "id"), ("erasures", "erasure_id")):
        rows = conn.execute(sa.text(f"SELECT {key}, site, candidate_id, identity FROM {table}")).fetchall()
        for row in rows:
            if not row.identity.startswith("entry:"):
                conn.execute(sa.text(f"UPDATE {table} SET identity = :i WHERE {key} = :k"),
                             {"i": f"{row.site}\x1f{row.candidate_id}", "k": row[0]})
