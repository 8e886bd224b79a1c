"""What produced a model's stored vectors: the weights (e.g. "imagenet", "random seed 1234",
"sha256:<digest of a local weights file>") and the runtime (e.g. "openvino-int8"). Vectors of
other weights are never compared with the served model's; NULL: stored before this migration,
adopted once (with a warning) by the first process that serves the model.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("search_models") as table:
        table.add_column(sa.Column("weights", sa.String(length=96), nullable=True))
        table.add_column(sa.Column("runtime", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("search_models") as table:
        table.drop_column("runtime")
        table.drop_column("weights")
