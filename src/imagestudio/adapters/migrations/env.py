"""Alembic environment of imagestudio: run from code, never from an ``alembic.ini``.

:func:`imagestudio.adapters.migrations.upgrade` hands this script an open connection inside a
locked transaction (``config.attributes["connection"]``) and every revision runs in it, so a
failed upgrade leaves the database as it was (SQLite and PostgreSQL both have transactional DDL).

Adding a revision (the chain is linear: ``0001`` -> ``0002`` -> ``0003`` -> ...):

1. add ``versions/rNNNN_<what>.py`` with ``revision = "NNNN"`` and ``down_revision`` set to the
   current head (the newest file; ``imagestudio db current`` prints it); copy a file for the shape;
2. write ``upgrade()`` and ``downgrade()`` by hand with ``op``. On SQLite, changing an existing
   column or constraint goes through ``with op.batch_alter_table(...)``; branch on
   ``op.get_bind().dialect.name`` for anything dialect-specific (triggers, FTS5, tsvector);
3. change the SQLModel table models to match: ``tests/adapters/test_migrations.py`` compares the
   migrated schema with ``SQLModel.metadata`` on SQLite and PostgreSQL and fails on any drift,
   and checks that the chain has one head.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("imagestudio migrations run from code: use `imagestudio db upgrade`")

# The caller's transaction wraps every revision, on SQLite too (it opened it with BEGIN IMMEDIATE).
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
