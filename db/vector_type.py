"""A float32 vector column: pgvector's `vector` on PostgreSQL, a little-endian BLOB elsewhere.

On PostgreSQL the k-nearest query runs inside the database (cosine operator `<=>` over an
HNSW index, see search/index/postgres.py); on SQLite the same column is plain bytes and the search
runs in the in-memory index. Python always sees a (dim,) float32 numpy array or None.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

_LITTLE_ENDIAN_F4 = np.dtype("<f4")


class VectorType(TypeDecorator[np.ndarray]):
    """(dim,) float32 <-> pgvector `vector` (no fixed dim: one column holds every model's
    vectors; each model's HNSW index casts to its own dim) or a float32 BLOB."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(VECTOR())
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        array = np.ascontiguousarray(value, dtype=_LITTLE_ENDIAN_F4).reshape(-1)
        if dialect.name == "postgresql":
            return array.astype(np.float32)
        return array.tobytes()

    def process_result_value(self, value: Any, dialect: Dialect) -> np.ndarray | None:
        if value is None:
            return None
        if isinstance(value, bytes | bytearray | memoryview):
            return np.frombuffer(bytes(value), dtype=_LITTLE_ENDIAN_F4).astype(np.float32)
        return np.asarray(value, dtype=np.float32)
