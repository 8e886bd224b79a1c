"""The catalogue's tables. Alembic migrations import this metadata (migrations/env.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names so batch-mode migrations on SQLite can find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Exact decimal: prices are money, never floats. None: not priced yet (an import without
    # a CSV); such products never pass a maximum-price filter.
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    url: Mapped[str | None] = mapped_column(String(2000))
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    in_stock: Mapped[bool] = mapped_column(Boolean, default=True)
    # Soft delete: a removed product leaves search results but nothing is ever lost.
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    images: Mapped[list[ProductImage]] = relationship(
        back_populates="product", order_by="ProductImage.id", cascade="all, delete-orphan"
    )


class ProductImage(Base):
    __tablename__ = "product_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    # Path relative to MEDIA_DIR; always generated from the content hash, never from user input.
    file_name: Mapped[str] = mapped_column(String(200))
    # sha256 of the bytes: the same bytes twice are one image.
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    # Telegram's file_id once the bot has uploaded this image, so it is never uploaded twice.
    telegram_file_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    product: Mapped[Product] = relationship(back_populates="images")
    embeddings: Mapped[list[Embedding]] = relationship(
        back_populates="image", cascade="all, delete-orphan"
    )


class Embedding(Base):
    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("image_id", "model_name", name="uq_embeddings_image_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(
        ForeignKey("product_images.id", ondelete="CASCADE"), index=True
    )
    model_name: Mapped[str] = mapped_column(String(64), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    # The raw float32 vector, little-endian, dim * 4 bytes (as rclip stores its vectors).
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    image: Mapped[ProductImage] = relationship(back_populates="embeddings")


class SearchLog(Base):
    __tablename__ = "search_log"
    __table_args__ = (Index("ix_search_log_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Opaque: a salted hash of the Telegram user id, or "cli"; never a name or a phone number.
    user_ref: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    query_hash: Mapped[str | None] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(64))
    # Filters as given: {"category": ..., "max_price": ..., "product_id": ...}.
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Ranked results: [{"product_id": 3, "image_id": 7, "distance": 0.12}, ...].
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    best_distance: Mapped[float | None] = mapped_column()
    latency_ms: Mapped[float] = mapped_column()
    # The query's (dim,) float32 vector, so "cheaper than this" re-runs without the photo.
    query_vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    # What a shared result link (`?start=r_<token>`) carries: unguessable, unlike the id, so
    # nobody can walk through other people's searches.
    share_token: Mapped[str | None] = mapped_column(String(32), unique=True)


class Feedback(Base):
    """A customer's thumbs up (+1) or down (-1) on a search's results; one vote per person."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("search_id", "user_ref", name="uq_feedback_search_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(
        ForeignKey("search_log.id", ondelete="CASCADE"), index=True
    )
    user_ref: Mapped[str] = mapped_column(String(64))
    vote: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class AuditEntry(Base):
    """Every admin action, allowed or refused: who, what, when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Staff are identified by their numeric Telegram id (authorisation is by id only).
    user_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # "ok", "refused", "failed"
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
