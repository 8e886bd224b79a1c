"""One photo in several products, and a photo's variant.

- product_images.content_hash is unique per product (product_id, content_hash) instead of
  across the catalogue: a set and its base product may show the same photo (Google's feeds
  allow it); the file, named by the hash, is shared.
- product_images.variant_link, variant_price, variant_currency: the variant (a feed row of an
  item_group_id) a photo shows, so a search that matched it shows that variant's link and price.

On SQLite the constraint change copies the table (batch mode), and the copy's DROP TABLE of the
old one deletes its children through ON DELETE CASCADE while foreign keys are on (PRAGMA
foreign_keys cannot be switched off inside the migration's transaction): the image vectors
(embeddings) are kept aside in a temporary table and put back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 04:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _keep_children() -> bool:
    """Copy the rows that reference product_images aside (SQLite only); whether it did."""
    if op.get_bind().dialect.name != "sqlite":
        return False
    op.execute("DROP TABLE IF EXISTS temp._embeddings_kept_0012")
    op.execute("CREATE TEMP TABLE _embeddings_kept_0012 AS SELECT * FROM embeddings")
    return True


def _restore_children() -> None:
    op.execute(
        "INSERT INTO embeddings SELECT * FROM temp._embeddings_kept_0012 "
        "WHERE id NOT IN (SELECT id FROM embeddings)"
    )
    op.execute("DROP TABLE temp._embeddings_kept_0012")


def upgrade() -> None:
    kept = _keep_children()
    with op.batch_alter_table("product_images", schema=None) as batch_op:
        batch_op.drop_constraint("uq_product_images_content_hash", type_="unique")
        batch_op.create_unique_constraint(
            "uq_product_images_product_hash", ["product_id", "content_hash"]
        )
        batch_op.create_index("ix_product_images_content_hash", ["content_hash"], unique=False)
        batch_op.add_column(sa.Column("variant_link", sa.String(length=2000), nullable=True))
        batch_op.add_column(
            sa.Column("variant_price", sa.Numeric(precision=12, scale=2), nullable=True)
        )
        batch_op.add_column(sa.Column("variant_currency", sa.String(length=3), nullable=True))
    if kept:
        _restore_children()


def downgrade() -> None:
    # A photo shared by several products keeps only its oldest row (the others' vectors go
    # with theirs): the old schema holds each photo once.
    op.execute(
        "DELETE FROM product_images WHERE id NOT IN "
        "(SELECT MIN(id) FROM product_images GROUP BY content_hash)"
    )
    kept = _keep_children()
    with op.batch_alter_table("product_images", schema=None) as batch_op:
        batch_op.drop_column("variant_currency")
        batch_op.drop_column("variant_price")
        batch_op.drop_column("variant_link")
        batch_op.drop_index("ix_product_images_content_hash")
        batch_op.drop_constraint("uq_product_images_product_hash", type_="unique")
        batch_op.create_unique_constraint("uq_product_images_content_hash", ["content_hash"])
    if kept:
        _restore_children()
