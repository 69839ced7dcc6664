"""Feedback, audit events and issued cards.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("item_key", sa.String(64), nullable=False, unique=True),
        sa.Column("service_id", sa.String(64), nullable=False, index=True),
        sa.Column("card_uuid", sa.String(256), nullable=False, index=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=True),
        sa.Column("override_system", sa.String(512), nullable=True),
        sa.Column("override_code", sa.String(256), nullable=True),
        sa.Column("override_display", sa.String(512), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("hook_instance", sa.String(128), nullable=True, index=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("hook", sa.String(64), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("card_topics", sa.JSON(), nullable=False),
        sa.Column("rule_set_version", sa.String(64), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(1024), nullable=True),
        sa.Column("data_sources", sa.JSON(), nullable=True),
    )
    op.create_table(
        "issued_card",
        sa.Column("card_uuid", sa.String(256), primary_key=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(128), nullable=True),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("issued_card")
    op.drop_table("audit_event")
    op.drop_table("feedback")
