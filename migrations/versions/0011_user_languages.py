"""The language each bot customer chose with /language (deleted by /forget).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_languages",
        sa.Column("user_ref", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_ref", name=op.f("pk_user_languages")),
    )


def downgrade() -> None:
    op.drop_table("user_languages")
