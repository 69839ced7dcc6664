"""Feedback and audit persistence (SQLAlchemy): see database.py; Alembic migrations in migrations/."""
