"""Charts: the dates and numbers behind a card's chart and plan links, by random token, until they expire.

Revision ID: 0003_charts
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_charts"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chart",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("series", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chart")
