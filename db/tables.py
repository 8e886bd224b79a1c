"""The catalogue's tables. Alembic migrations import this metadata (migrations/env.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.vector_type import VectorType

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
    # A colour name given by an admin (/colour, PATCH): wins over the colour computed from the
    # photos (product_images.colour_name). NULL: the computed one.
    colour: Mapped[str | None] = mapped_column(String(16))
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
    # The same bytes twice in one product are one image; the same bytes in two products (a set
    # and its base product, as Google's feeds allow) are two rows sharing one file (migration
    # 0012; before it a photo belonged to one product only).
    __table_args__ = (
        UniqueConstraint("product_id", "content_hash", name="uq_product_images_product_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    # Path relative to MEDIA_DIR; always generated from the content hash, never from user input.
    file_name: Mapped[str] = mapped_column(String(200))
    # sha256 of the bytes: the file's name, shared by every product that has these bytes.
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    byte_size: Mapped[int] = mapped_column(Integer)
    # Telegram's file_id once the bot has uploaded this image, so it is never uploaded twice.
    telegram_file_id: Mapped[str | None] = mapped_column(String(200))
    # The colour of the product in this photo (search.colour, from its pixels; model-free, so one
    # per image, not per model): the (46,) little-endian float32 descriptor and the main colour
    # name read off it. NULL until computed (`lookalike colour backfill` for older images).
    colour: Mapped[bytes | None] = mapped_column(LargeBinary)
    colour_name: Mapped[str | None] = mapped_column(String(16))
    # The variant this photo shows when the product has several (a feed's rows of one
    # item_group_id): its own link and price now, shown instead of the product's when this
    # photo is the one a search matched. NULL: the product's own (every other photo).
    variant_link: Mapped[str | None] = mapped_column(String(2000))
    variant_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    variant_currency: Mapped[str | None] = mapped_column(String(3))
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
    # The raw float32 vector, little-endian, dim * 4 bytes (as rclip stores its vectors): what
    # the model gave, kept so the post-processing can be fitted again.
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # The same vector after the model's post-processing (search_models.postprocess), (dim,)
    # float32, not normalised: what searches compare. A pgvector `vector` on PostgreSQL (HNSW
    # index per model, see migrations 0003), a float32 BLOB on SQLite. None until computed.
    index_vector: Mapped[np.ndarray | None] = mapped_column(VectorType(), nullable=True)
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
    # The distance the search ranked by: "cosine", "euclidean" or "inner_product".
    metric: Mapped[str] = mapped_column(String(16), default="cosine", server_default="cosine")
    latency_ms: Mapped[float] = mapped_column()
    # The query's (dim,) float32 vector, so "cheaper than this" re-runs without the photo.
    query_vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The query photo's colour descriptor (search.colour, (46,) float32): "cheaper" and "all
    # categories" re-run a search with it. A colour histogram of the product, not the photo.
    query_colour: Mapped[bytes | None] = mapped_column(LargeBinary)
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


class SearchModel(Base):
    """A backbone whose vectors the catalogue holds. Exactly one is active: searches use it.

    `lookalike reindex --model NAME` adds a row in state "indexing", computes every image's
    vector, then in one transaction marks it "ready" and active (the old model stays stored).
    """

    __tablename__ = "search_models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "vgg16_avgpool"
    backbone: Mapped[str] = mapped_column(String(32))  # e.g. "vgg16"
    dim: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # "indexing" | "ready"
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # search.postprocess.PostProcessor.to_json(), fitted on the catalogue; None: not fitted yet.
    postprocess: Mapped[str | None] = mapped_column(Text)
    # What produced the stored vectors (migration 0007): the weights ("imagenet", "random seed
    # 1234", "sha256:<file digest>") and the runtime ("openvino-int8", ...). Vectors of other
    # weights are never compared with the served model's. None: not known yet (stored before
    # 0007, or no vector yet), set by the first process that serves the model.
    weights: Mapped[str | None] = mapped_column(String(96))
    runtime: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class CatalogChange(Base):
    """One row per committed catalogue change, written in the same transaction, so every
    process (several bot instances, the CLI) can bring its in-memory index up to date by
    reading the rows after the last one it has seen. product_id None: reload everything
    (another model became active, the post-processing was fitted again)."""

    __tablename__ = "catalog_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    product_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RateLimitEvent(Base):
    """One search of one user, for the per-user limit shared by every bot instance."""

    __tablename__ = "rate_limit_events"
    __table_args__ = (Index("ix_rate_limit_events_user_time", "user_ref", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_ref: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserLanguage(Base):
    """The language a customer chose with the bot's /language (keyed by their pseudonymous
    reference, like the search log; deleted by /forget). Without a row the bot follows
    Telegram's language_code."""

    __tablename__ = "user_languages"

    user_ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    language: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class AdminDraft(Base):
    """An admin's guided /add in progress (which step, what was typed so far), in the database
    so that the next message may reach any bot instance."""

    __tablename__ = "admin_drafts"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    step: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class ResultOpen(Base):
    """A customer opened a product from a result list (or a shared result link)."""

    __tablename__ = "result_opens"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    search_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("search_log.id", ondelete="CASCADE"),
        index=True,
    )
    product_id: Mapped[int | None] = mapped_column(Integer)
    rank: Mapped[int | None] = mapped_column(Integer)
    user_ref: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """A key the shop's back office uses for catalogue writes over the web API. Only the
    sha256 of the secret is stored: the secret itself is shown once, when it is created."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # sha256 hex of the whole secret; a 256-bit random secret needs no salt or slow hash.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The secret's first characters, so a key can be recognised in `api-key list`.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FeedProduct(Base):
    """A SKU the shop's product feed has listed (feed/ sync): only these may be hidden when
    the feed stops listing them, so products an admin added by hand are never hidden."""

    __tablename__ = "feed_products"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    # True while the product is hidden because the feed stopped listing it; a product an
    # admin removed by hand is not restored by the feed.
    hidden_by_feed: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FeedImage(Base):
    """The last download of one photo URL of a feed product: its validators for the next
    conditional request, and the hash of the bytes the catalogue stored."""

    __tablename__ = "feed_images"
    __table_args__ = (UniqueConstraint("sku", "url_hash", name="uq_feed_images_sku_url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), index=True)
    # sha256 of the URL: URLs may be 2000 characters, too long for a portable unique index.
    url_hash: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    etag: Mapped[str | None] = mapped_column(String(256))
    last_modified: Mapped[str | None] = mapped_column(String(64))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FeedRun(Base):
    """One feed sync: when, from where, what it changed or why it changed nothing."""

    __tablename__ = "feed_runs"
    __table_args__ = (Index("ix_feed_runs_started_at", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The feed's scheme, host and path (never a query string: it may carry a token).
    source: Mapped[str] = mapped_column(String(300))
    # "running", "ok", "refused" (the guard), "failed", "dry-run"
    status: Mapped[str] = mapped_column(String(16))
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The first problems: [{"label": "item 12", "reason": "..."}, ...]
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    message: Mapped[str | None] = mapped_column(Text)


class JobLease(Base):
    """Who runs a shared job (the feed sync, ...) until when: one row per job name, taken with
    a conditional UPDATE (or the INSERT of the first row), so two processes never hold it."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SearchDaily(Base):
    """Searches of one UTC day, one model and one metric, folded into counts when the search
    log's rows pass SEARCH_LOG_RETENTION_DAYS (db/retention.py): what /stats needs for all-time
    figures, and no per-customer data (no user reference, no query, no results)."""

    __tablename__ = "search_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)
    searches: Mapped[int] = mapped_column(Integer, default=0)
    thumbs_up: Mapped[int] = mapped_column(Integer, default=0)
    thumbs_down: Mapped[int] = mapped_column(Integer, default=0)
    opens: Mapped[int] = mapped_column(Integer, default=0)  # result_opens of these searches
    # Sum of the searches' latencies: the mean survives; medians are over the live log only.
    latency_ms_sum: Mapped[float] = mapped_column(default=0.0)
    # Best-match cosine distances as a histogram of 0.01-wide buckets, {"66": 3}: bucket b
    # holds distances in ((b-1)/100, b/100], so "over a weak threshold t" (t a multiple of
    # 0.01, like WEAK_MATCH_DISTANCE) is exact: the buckets above round(t * 100).
    best_distance_buckets: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)


class AppSecret(Base):
    """A secret every process of one installation shares, generated once by the first that
    needs it (db/app_secrets.py): e.g. the key of the web's pseudonymous client references,
    so rate limits and votes hold across instances and restarts without configuration."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
