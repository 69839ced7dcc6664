"""Alembic environment: migrations run on the connection the Store hands over (never read from a file)."""

from alembic import context

from cds.store.database import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
