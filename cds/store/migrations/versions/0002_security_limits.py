"""Replay cache table, feedback client key for the rate limit, indexes for the retention purge.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_token",
        sa.Column("token_key", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float(), nullable=False, index=True),
    )
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("client_key", sa.String(64), nullable=True))
    op.create_index("ix_feedback_client_received", "feedback", ["client_key", "received_at"])
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_index("ix_issued_card_issued_at", "issued_card", ["issued_at"])


def downgrade() -> None:
    op.drop_index("ix_issued_card_issued_at", "issued_card")
    op.drop_index("ix_feedback_received_at", "feedback")
    op.drop_index("ix_feedback_client_received", "feedback")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("client_key")
    op.drop_table("used_token")
