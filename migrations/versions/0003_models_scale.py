"""Several models and metrics, pgvector, and state shared by several bot instances.

- search_models: the backbones whose vectors are stored, which one is active, and its fitted
  post-processing. The existing VGG16 vectors become the active model "vgg16_avgpool".
- embeddings.index_vector: the post-processed vector searches compare (pgvector `vector` on
  PostgreSQL, with an HNSW cosine index for VGG16's 512 dimensions; a BLOB on SQLite). Filled
  by the application when it opens the catalogue (the post-processing is fitted in Python).
- search_log.metric; catalog_changes (index sync between processes); rate_limit_events;
  admin_drafts (the guided /add); result_opens (products opened from a result list).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.vector_type import VectorType

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # pgvector: users who run their own PostgreSQL get the extension from the migration.
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")

    op.create_table(
        "search_models",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("backbone", sa.String(length=32), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("postprocess", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_search_models")),
    )
    op.execute(
        sa.text(
            "INSERT INTO search_models (name, backbone, dim, state, active, created_at, updated_at)"
            " VALUES ('vgg16_avgpool', 'vgg16', 512, 'ready', :yes, CURRENT_TIMESTAMP,"
            " CURRENT_TIMESTAMP)"
        ).bindparams(yes=True)
    )

    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("index_vector", VectorType(), nullable=True))
    if postgres:
        # One HNSW index per model (the column has no fixed dim; the index casts to the model's).
        op.execute(
            "CREATE INDEX ix_embeddings_hnsw_vgg16_avgpool ON embeddings USING hnsw "
            "((index_vector::vector(512)) vector_cosine_ops) "
            "WHERE model_name = 'vgg16_avgpool'"
        )

    with op.batch_alter_table("search_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("metric", sa.String(length=16), server_default="cosine", nullable=False)
        )

    op.create_table(
        "catalog_changes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_changes")),
    )
    op.create_table(
        "rate_limit_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("user_ref", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_events")),
    )
    op.create_index(
        "ix_rate_limit_events_user_time", "rate_limit_events", ["user_ref", "created_at"]
    )
    op.create_table(
        "admin_drafts",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_admin_drafts")),
    )
    op.create_table(
        "result_opens",
        sa.Column("id", _ID, nullable=False),
        sa.Column("search_id", _ID, nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("user_ref", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["search_log.id"],
            name=op.f("fk_result_opens_search_id_search_log"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_opens")),
    )
    op.create_index(op.f("ix_result_opens_search_id"), "result_opens", ["search_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_result_opens_search_id"), table_name="result_opens")
    op.drop_table("result_opens")
    op.drop_table("admin_drafts")
    op.drop_index("ix_rate_limit_events_user_time", table_name="rate_limit_events")
    op.drop_table("rate_limit_events")
    op.drop_table("catalog_changes")
    with op.batch_alter_table("search_log", schema=None) as batch_op:
        batch_op.drop_column("metric")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_embeddings_hnsw_vgg16_avgpool")
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.drop_column("index_vector")
    op.drop_table("search_models")
