"""Alembic's entry point for the screening log's migrations (run by screening.log.migrate)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - nlc-screen always passes its connection
    raise RuntimeError("run the screening log's migrations through screening.log.migrate")
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
