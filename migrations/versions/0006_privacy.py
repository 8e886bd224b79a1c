"""Customers' data: per-day search aggregates (what /stats keeps once the search log's rows pass
SEARCH_LOG_RETENTION_DAYS), and no stored hash of customers' photos any more.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("searches", sa.Integer(), nullable=False),
        sa.Column("thumbs_up", sa.Integer(), nullable=False),
        sa.Column("thumbs_down", sa.Integer(), nullable=False),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("latency_ms_sum", sa.Double(), nullable=False),
        sa.Column("best_distance_buckets", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("day", "model_name", "metric", name=op.f("pk_search_daily")),
    )
    # The sha256 of a customer's photo identifies that photo: searches no longer store it
    # (nothing read it), and the ones stored before are erased.
    op.execute("UPDATE search_log SET query_hash = NULL WHERE query_hash IS NOT NULL")


def downgrade() -> None:
    # The erased photo hashes are not brought back (they are gone on purpose).
    op.drop_table("search_daily")
