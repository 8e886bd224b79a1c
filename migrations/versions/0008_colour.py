"""Colour: every product image's colour descriptor (search.colour, from its pixels) and the
colour name read off it, beside the image's vectors; a logged search's query colour; and an
admin's correction of a product's colour.
Filled for new images as they enter; `lookalike colour backfill` fills the images stored
before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("product_images", schema=None) as batch_op:
        # (46,) little-endian float32: search.colour's descriptor; NULL until computed.
        batch_op.add_column(sa.Column("colour", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("colour_name", sa.String(length=16), nullable=True))
    with op.batch_alter_table("products", schema=None) as batch_op:
        # An admin's correction of the colour; wins over the computed one.
        batch_op.add_column(sa.Column("colour", sa.String(length=16), nullable=True))
    with op.batch_alter_table("search_log", schema=None) as batch_op:
        # The query photo's descriptor, so "cheaper" / "all categories" rank by colour too.
        batch_op.add_column(sa.Column("query_colour", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("search_log", schema=None) as batch_op:
        batch_op.drop_column("query_colour")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("colour")
    with op.batch_alter_table("product_images", schema=None) as batch_op:
        batch_op.drop_column("colour_name")
        batch_op.drop_column("colour")
