"""Keyword-only data access functions. Each takes the caller's Session: one session per unit
of work, opened and committed by the caller."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from db.records import (
    PRODUCT_FIELD_NAMES,
    PhotoVariant,
    ProductFields,
    ProductRecord,
    SearchRecord,
)
from db.tables import (
    AuditEntry,
    CatalogChange,
    Embedding,
    Feedback,
    Product,
    ProductImage,
    SearchLog,
    SearchModel,
)

VECTOR_DTYPE = np.dtype("<f4")  # little-endian float32, 4 bytes per value
SHARE_TOKEN_BYTES = 12  # 16 URL-safe characters


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def blob_to_vector(blob: bytes, dim: int) -> np.ndarray:
    vector = np.frombuffer(blob, dtype=VECTOR_DTYPE)
    if vector.shape != (dim,):
        raise ValueError(f"stored vector has {vector.size} values, expected {dim}")
    return vector.astype(np.float32)


def get_product(session: Session, *, sku: str) -> Product | None:
    return session.scalar(
        select(Product).where(Product.sku == sku).options(selectinload(Product.images))
    )


def get_product_by_id(session: Session, *, product_id: int) -> Product | None:
    return session.get(Product, product_id, options=[selectinload(Product.images)])


def list_products(
    session: Session,
    *,
    include_removed: bool = False,
    category: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[ProductRecord]:
    query = select(Product).options(selectinload(Product.images)).order_by(Product.sku)
    if not include_removed:
        query = query.where(Product.removed.is_(False))
    if category is not None:
        query = query.where(Product.category == category)
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return [ProductRecord.from_row(row) for row in session.scalars(query)]


def search_products(
    session: Session,
    *,
    text: str,
    limit: int = 20,
    category: str | None = None,
    colour: str | None = None,
    max_price: Decimal | None = None,
) -> list[ProductRecord]:
    """Active products whose SKU or name contains `text` (case-insensitive; "" matches all), in
    `category`, of `colour` (the product's: an admin's correction, else its first photo's
    with a computed colour) and priced at most `max_price`; by SKU."""
    query = select(Product).where(Product.removed.is_(False))
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(
            func.lower(Product.sku).like(pattern) | func.lower(Product.name).like(pattern)
        )
    if category is not None:
        query = query.where(Product.category == category)
    if max_price is not None:
        query = query.where(Product.price <= max_price)
    if colour is not None:
        # Those that may be of that colour (corrected to it, or a photo of it); the first photo
        # decides below, so the limit is applied after.
        query = query.where(
            (Product.colour == colour)
            | (Product.colour.is_(None) & Product.images.any(ProductImage.colour_name == colour))
        )
    query = query.options(selectinload(Product.images)).order_by(Product.sku)
    if colour is None:
        return [ProductRecord.from_row(row) for row in session.scalars(query.limit(limit))]
    found = (ProductRecord.from_row(row) for row in session.scalars(query))
    return [record for record in found if record.colour == colour][:limit]


def create_product(session: Session, *, fields: ProductFields, in_stock: bool = True) -> Product:
    product = Product(
        **{name: getattr(fields, name) for name in PRODUCT_FIELD_NAMES},
        in_stock=in_stock,
        removed=False,
    )
    session.add(product)
    session.flush()
    return product


def update_product_fields(session: Session, *, product: Product, fields: ProductFields) -> bool:
    """Give `product` these fields; whether anything changed (nothing is written if not)."""
    changed = False
    for name in PRODUCT_FIELD_NAMES:
        value = getattr(fields, name)
        if getattr(product, name) != value:
            setattr(product, name, value)
            changed = True
    return changed


def active_categories(session: Session) -> list[str]:
    query = (
        select(Product.category)
        .where(Product.category.is_not(None), Product.removed.is_(False))
        .distinct()
        .order_by(Product.category)
    )
    return [category for category in session.scalars(query) if category]


def add_image(
    session: Session,
    *,
    product: Product,
    file_name: str,
    content_hash: str,
    width: int,
    height: int,
    byte_size: int,
    colour: bytes | None = None,
    colour_name: str | None = None,
    variant: PhotoVariant | None = None,
) -> ProductImage:
    image = ProductImage(
        product=product,
        file_name=file_name,
        content_hash=content_hash,
        width=width,
        height=height,
        byte_size=byte_size,
        colour=colour,
        colour_name=colour_name,
        variant_link=variant.link if variant else None,
        variant_price=variant.price if variant else None,
        variant_currency=variant.currency if variant else None,
    )
    session.add(image)
    session.flush()
    return image


def store_embedding(
    session: Session,
    *,
    image_id: int,
    model_name: str,
    vector: np.ndarray,
    index_vector: np.ndarray | None = None,
) -> Embedding:
    """Insert or replace the vector of one image for one model. vector: (dim,) float32 as the
    model gave it; index_vector: (dim,) float32 after the model's post-processing."""
    existing = session.scalar(
        select(Embedding).where(Embedding.image_id == image_id, Embedding.model_name == model_name)
    )
    blob = vector_to_blob(vector)
    if existing is not None:
        existing.vector = blob
        existing.dim = int(vector.shape[0])
        existing.index_vector = index_vector
        return existing
    embedding = Embedding(
        image_id=image_id,
        model_name=model_name,
        dim=int(vector.shape[0]),
        vector=blob,
        index_vector=index_vector,
    )
    session.add(embedding)
    return embedding


def active_model(session: Session) -> SearchModel | None:
    """The model searches use (migration 0003 makes VGG16 active)."""
    return session.scalar(select(SearchModel).where(SearchModel.active.is_(True)).limit(1))


def get_model(session: Session, *, name: str) -> SearchModel | None:
    return session.get(SearchModel, name)


def list_models(session: Session) -> list[SearchModel]:
    return list(session.scalars(select(SearchModel).order_by(SearchModel.name)))


def count_embeddings(session: Session, *, model_name: str) -> int:
    return int(
        session.scalar(select(func.count(Embedding.id)).where(Embedding.model_name == model_name))
        or 0
    )


def count_images(session: Session) -> int:
    return int(session.scalar(select(func.count(ProductImage.id))) or 0)


def spread_image_files(session: Session, *, limit: int) -> list[str]:
    """Up to `limit` image file names, spread evenly over the catalogue in the order the
    images were added (every k-th), for a sample that is not just the first import's."""
    names = list(session.scalars(select(ProductImage.file_name).order_by(ProductImage.id)))
    if len(names) <= limit:
        return names
    step = len(names) / limit
    return [names[int(i * step)] for i in range(limit)]


def raw_vectors(
    session: Session, *, model_name: str, dim: int, missing_index_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Embedding ids (n,) and raw vectors (n, dim) float32 of one model, by embedding id."""
    query = select(Embedding.id, Embedding.vector).where(
        Embedding.model_name == model_name, Embedding.dim == dim
    )
    if missing_index_only:
        query = query.where(Embedding.index_vector.is_(None))
    rows = session.execute(query.order_by(Embedding.id)).all()
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.empty((len(rows), dim), dtype=np.float32)
    for i, row in enumerate(rows):
        vectors[i] = np.frombuffer(row[1], dtype=VECTOR_DTYPE)
    return ids, vectors


def set_index_vectors(
    session: Session, *, embedding_ids: Sequence[int], vectors: np.ndarray
) -> None:
    """Write (n, dim) post-processed vectors to the given embeddings (an ORM bulk UPDATE by
    primary key: one statement executed for many rows)."""
    if len(embedding_ids) == 0:
        return
    session.execute(
        update(Embedding),
        [
            {"id": int(eid), "index_vector": vector}
            for eid, vector in zip(embedding_ids, vectors, strict=True)
        ],
    )


def load_index_vectors(
    session: Session, *, model_name: str, product_id: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Image ids (n,), product ids (n,) and post-processed vectors ((dim,) each) of one model,
    all products or one; rows without an index vector yet are left out."""
    query = (
        select(Embedding.image_id, ProductImage.product_id, Embedding.index_vector)
        .join(ProductImage, ProductImage.id == Embedding.image_id)
        .where(Embedding.model_name == model_name, Embedding.index_vector.is_not(None))
        .order_by(Embedding.image_id)
    )
    if product_id is not None:
        query = query.where(ProductImage.product_id == product_id)
    rows = session.execute(query).all()
    image_ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    product_ids = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
    return image_ids, product_ids, [row[2] for row in rows]


def log_change(session: Session, *, product_id: int | None) -> None:
    """Record a catalogue change in the caller's transaction (None: reload everything)."""
    session.add(CatalogChange(product_id=product_id))


def last_change_id(session: Session) -> int:
    return int(session.scalar(select(func.max(CatalogChange.id))) or 0)


def changes_since(session: Session, *, after_id: int) -> list[tuple[int, int | None]]:
    """(change id, product id or None) of the changes committed after `after_id`, in order."""
    rows = session.execute(
        select(CatalogChange.id, CatalogChange.product_id)
        .where(CatalogChange.id > after_id)
        .order_by(CatalogChange.id)
    ).all()
    return [(int(row[0]), row[1]) for row in rows]


def image_vectors(session: Session, *, product_id: int, model_name: str) -> list[np.ndarray]:
    blobs = session.execute(
        select(Embedding.vector, Embedding.dim)
        .join(ProductImage, ProductImage.id == Embedding.image_id)
        .where(ProductImage.product_id == product_id, Embedding.model_name == model_name)
        .order_by(ProductImage.id)
    ).all()
    return [blob_to_vector(blob, dim) for blob, dim in blobs]


def images_missing_embedding(session: Session, *, model_name: str) -> list[ProductImage]:
    has_vector = select(Embedding.image_id).where(Embedding.model_name == model_name)
    return list(
        session.scalars(
            select(ProductImage).where(ProductImage.id.not_in(has_vector)).order_by(ProductImage.id)
        )
    )


def image_files(session: Session) -> list[tuple[int, str]]:
    """(image id, file name) of every product image, by id."""
    rows = session.execute(
        select(ProductImage.id, ProductImage.file_name).order_by(ProductImage.id)
    ).all()
    return [(int(image_id), str(file_name)) for image_id, file_name in rows]


def referenced_files(session: Session) -> set[str]:
    return set(session.scalars(select(ProductImage.file_name)))


def set_telegram_file_id(session: Session, *, image_id: int, file_id: str) -> None:
    image = session.get(ProductImage, image_id)
    if image is not None:
        image.telegram_file_id = file_id


def log_search(
    session: Session,
    *,
    user_ref: str,
    source: str,
    query_hash: str | None,
    model_name: str,
    filters: dict[str, Any],
    results: list[dict[str, Any]],
    latency_ms: float,
    query_vector: np.ndarray | None = None,
    metric: str = "cosine",
    query_colour: np.ndarray | None = None,
    best_distance: float | None = None,
) -> SearchLog:
    """`best_distance`: the cosine distance of the nearest product when the results are not
    ranked by it (the colour blend); by default that of the first result."""
    entry = SearchLog(
        metric=metric,
        share_token=secrets.token_urlsafe(SHARE_TOKEN_BYTES),
        query_vector=vector_to_blob(query_vector) if query_vector is not None else None,
        query_colour=vector_to_blob(query_colour) if query_colour is not None else None,
        user_ref=user_ref,
        source=source,
        query_hash=query_hash,
        model_name=model_name,
        filters=filters,
        results=results,
        # Cosine distance of the best match whatever the metric (weak-match statistics).
        best_distance=best_distance
        if best_distance is not None
        else (1.0 - float(results[0]["similarity"]) / 100.0)
        if results and "similarity" in results[0]
        else (float(results[0]["distance"]) if results else None),
        latency_ms=latency_ms,
    )
    session.add(entry)
    session.flush()
    return entry


def get_search(
    session: Session, *, search_id: int | None = None, share_token: str | None = None
) -> SearchRecord | None:
    """A logged search by its id, or by the token of its shared link."""
    if search_id is not None:
        row = session.get(SearchLog, search_id)
    elif share_token is not None:
        row = session.scalar(select(SearchLog).where(SearchLog.share_token == share_token))
    else:
        raise ValueError("give search_id or share_token")
    if row is None:
        return None
    return SearchRecord(
        share_token=row.share_token,
        id=row.id,
        created_at=row.created_at,
        user_ref=row.user_ref,
        source=row.source,
        model_name=row.model_name,
        filters=dict(row.filters),
        results=list(row.results),
        latency_ms=row.latency_ms,
        query_vector=np.frombuffer(row.query_vector, dtype=VECTOR_DTYPE).astype(np.float32)
        if row.query_vector
        else None,
        metric=row.metric,
        query_colour=np.frombuffer(row.query_colour, dtype=VECTOR_DTYPE).astype(np.float32)
        if row.query_colour
        else None,
    )


def count_products(session: Session, *, active_only: bool = False) -> int:
    query = select(func.count(Product.id))
    if active_only:
        query = query.where(Product.removed.is_(False), Product.in_stock.is_(True))
    return int(session.scalar(query) or 0)


def search_stats(session: Session, *, since: datetime) -> tuple[int, list[float], list[float]]:
    """(number of searches, their latencies in ms, their best distances) since `since`."""
    rows = session.execute(
        select(SearchLog.latency_ms, SearchLog.best_distance).where(SearchLog.created_at >= since)
    ).all()
    latencies = [float(row[0]) for row in rows]
    best = [float(row[1]) for row in rows if row[1] is not None]
    return len(rows), latencies, best


def search_id_of_token(session: Session, *, share_token: str) -> int | None:
    """The id of the logged search whose shared link carries this token, None if none does."""
    found = session.scalar(select(SearchLog.id).where(SearchLog.share_token == share_token))
    return None if found is None else int(found)


def record_feedback(session: Session, *, search_id: int, user_ref: str, vote: int) -> bool:
    """Store a +1/-1 vote, replacing the person's earlier vote. False if the search is unknown."""
    if session.get(SearchLog, search_id) is None:
        return False
    existing = session.scalar(
        select(Feedback).where(Feedback.search_id == search_id, Feedback.user_ref == user_ref)
    )
    if existing is None:
        session.add(Feedback(search_id=search_id, user_ref=user_ref, vote=vote))
    else:
        existing.vote = vote
    return True


def feedback_counts(session: Session, *, since: datetime | None = None) -> dict[int, int]:
    """{+1: thumbs up, -1: thumbs down}."""
    query = select(Feedback.vote, func.count(Feedback.id)).group_by(Feedback.vote)
    if since is not None:
        query = query.where(Feedback.created_at >= since)
    counts = {1: 0, -1: 0}
    for vote, count in session.execute(query):
        counts[int(vote)] = int(count)
    return counts


def audit(
    session: Session,
    *,
    user_id: int,
    action: str,
    outcome: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            user_id=user_id,
            action=action,
            target=target[:64] if target else None,
            outcome=outcome,
            details=details or {},
        )
    )


def audit_entries(session: Session, *, limit: int = 100) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)))
