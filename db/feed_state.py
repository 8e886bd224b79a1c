"""What the feed sync remembers between runs, and the generic job lease.

- feed_products: the SKUs the feed owns, and which of them the feed hid;
- feed_images: per (SKU, photo URL) the validators (ETag, Last-Modified) and content hash of
  the last download, for conditional requests;
- feed_runs: one row per sync, for /stats and the audit of what happened;
- job_leases: one process at a time runs a shared job (take / renew / release).

Keyword-only functions taking the caller's Session; the caller commits, except for the lease
functions, which commit themselves (a lease is only useful once others can see it). Times
are UTC and come from the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.shared_state import as_utc
from db.tables import FeedImage, FeedProduct, FeedRun, JobLease

_CHUNK = 500  # SKUs per IN (...) list: well under SQLite's parameter limit


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


# ---- SKUs the feed owns ----------------------------------------------------------------------


def owned_skus(session: Session) -> dict[str, bool]:
    """{sku: hidden_by_feed} of every SKU the feed has listed."""
    rows = session.execute(select(FeedProduct.sku, FeedProduct.hidden_by_feed))
    return {sku: bool(hidden) for sku, hidden in rows}


def claim_skus(session: Session, *, skus: Iterable[str], now: datetime) -> int:
    """Record that the feed lists `skus` (seen now); returns how many were new."""
    wanted = sorted(set(skus))
    known: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        known.update(session.scalars(select(FeedProduct.sku).where(FeedProduct.sku.in_(chunk))))
        session.execute(
            update(FeedProduct)
            .where(FeedProduct.sku.in_(chunk))
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    new = [sku for sku in wanted if sku not in known]
    session.add_all(
        FeedProduct(sku=sku, hidden_by_feed=False, first_seen_at=now, last_seen_at=now)
        for sku in new
    )
    return len(new)


def set_hidden_by_feed(session: Session, *, sku: str, hidden: bool) -> None:
    session.execute(
        update(FeedProduct)
        .where(FeedProduct.sku == sku)
        .values(hidden_by_feed=hidden)
        .execution_options(synchronize_session=False)
    )


# ---- photo validators --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedImageRecord:
    sku: str
    url: str
    etag: str | None
    last_modified: str | None
    content_hash: str | None


def feed_images(session: Session) -> list[FeedImageRecord]:
    rows = session.execute(
        select(
            FeedImage.sku,
            FeedImage.url,
            FeedImage.etag,
            FeedImage.last_modified,
            FeedImage.content_hash,
        )
    )
    return [FeedImageRecord(*row) for row in rows]


def save_feed_image(session: Session, *, record: FeedImageRecord, now: datetime) -> None:
    """Insert or replace what a download of (sku, url) returned."""
    row = session.scalar(
        select(FeedImage).where(
            FeedImage.sku == record.sku, FeedImage.url_hash == url_hash(record.url)
        )
    )
    if row is None:
        row = FeedImage(sku=record.sku, url_hash=url_hash(record.url), url=record.url)
        session.add(row)
    row.etag = record.etag[:256] if record.etag else None
    row.last_modified = record.last_modified[:64] if record.last_modified else None
    row.content_hash = record.content_hash
    row.checked_at = now


# ---- sync runs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedRunRecord:
    id: int
    started_at: datetime
    finished_at: datetime | None
    source: str
    status: str
    forced: bool
    counts: dict[str, Any]
    errors: list[dict[str, Any]]
    message: str | None


def start_run(session: Session, *, source: str, forced: bool, now: datetime) -> int:
    row = FeedRun(started_at=now, source=source[:300], status="running", forced=forced)
    session.add(row)
    session.flush()
    return int(row.id)


def finish_run(
    session: Session,
    *,
    run_id: int,
    status: str,
    counts: dict[str, Any],
    errors: list[dict[str, Any]],
    message: str | None,
    now: datetime,
) -> None:
    row = session.get(FeedRun, run_id)
    if row is None:
        return
    row.status, row.counts, row.errors, row.message = status, counts, errors, message
    row.finished_at = now


def last_run(session: Session) -> FeedRunRecord | None:
    row = session.scalar(select(FeedRun).order_by(FeedRun.id.desc()).limit(1))
    if row is None:
        return None
    return FeedRunRecord(
        id=int(row.id),
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at is not None else None,
        source=row.source,
        status=row.status,
        forced=bool(row.forced),
        counts=dict(row.counts or {}),
        errors=list(row.errors or []),
        message=row.message,
    )


# ---- the job lease -------------------------------------------------------------------------------


def _changed(result: object) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


def take_lease(session: Session, *, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Hold the lease `name` until now + ttl if it is free, expired or already ours. Commits.

    The UPDATE's condition is evaluated by the database on the row itself, so of two
    processes racing for an expired lease exactly one changes the row; the first lease ever
    is an INSERT, and the primary key lets only one of two racing INSERTs through."""
    result = session.execute(
        update(JobLease)
        .where(JobLease.name == name, (JobLease.expires_at <= now) | (JobLease.holder == holder))
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if _changed(result) == 1:
        session.commit()
        return True
    if session.get(JobLease, name) is not None:
        session.rollback()
        return False
    session.add(JobLease(name=name, holder=holder, expires_at=now + ttl))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def replace_lease_holder(
    session: Session, *, name: str, old: str, new: str, now: datetime, ttl: timedelta
) -> bool:
    """Take the lease from `old` (known to be dead), only if `old` still holds it. Commits."""
    result = session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.holder == old)
        .values(holder=new, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return _changed(result) == 1


def renew_lease(session: Session, *, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Extend our lease; False if it is no longer ours (it expired and another took it)."""
    result = session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.holder == holder)
        .values(expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return _changed(result) == 1


def release_lease(session: Session, *, name: str, holder: str, now: datetime) -> None:
    """Let others take the lease at once (if it is still ours)."""
    session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.holder == holder)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def lease_holder(session: Session, *, name: str, now: datetime) -> str | None:
    """Who holds the lease now (None: nobody, or it expired)."""
    row = session.get(JobLease, name)
    if row is None or as_utc(row.expires_at) <= now:
        return None
    return row.holder
