"""Alembic environment: migrations run on a connection the service hands over."""

from alembic import context
from sqlalchemy import Connection

from printer_utilization.adapters.db import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through printer_utilization.adapters.migrate")
context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
