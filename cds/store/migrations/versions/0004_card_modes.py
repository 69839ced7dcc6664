"""Issued cards with their rule, its version, the patient and their mode: shown, or silent (a rule in pilot, or a
silent service: evaluated and audited with what the card would have said, never returned).

Revision ID: 0004
Revises: 0003_charts
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003_charts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.add_column(sa.Column("mode", sa.String(8), nullable=False, server_default="shown"))
        batch.add_column(sa.Column("rule_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rule_version", sa.String(32), nullable=True))
        batch.add_column(sa.Column("patient_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("card", sa.JSON(), nullable=True))
    op.create_index("ix_audit_event_service_time", "audit_event", ["service_id", "time"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_service_time", "audit_event")
    with op.batch_alter_table("issued_card") as batch:
        for column in ("card", "patient_id", "rule_version", "rule_id", "mode"):
            batch.drop_column(column)
