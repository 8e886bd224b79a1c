"""What the feed sync remembers between runs, in the catalogue's database:

- feed_products: the SKUs the feed owns, and which of them the feed hid;
- feed_images: per (SKU, photo URL) the validators (ETag, Last-Modified) and content hash of
  the last download, for conditional requests;
- feed_runs: one row per sync, for /stats and the audit of what happened. A run killed before
  it finished stays "running" until the next run (which holds the lease, so the killed one
  is dead) closes it as "killed".

One short transaction per call. Times are UTC and come from the caller (`now`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.database import as_utc
from db.tables import AuditEntry, FeedImage, FeedProduct, FeedRun, Product

__all__ = ["FeedImageRecord", "FeedLedger", "FeedRunRecord"]

_CHUNK = 500  # SKUs per IN (...) list: well under SQLite's parameter limit


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class FeedImageRecord:
    sku: str
    url: str
    etag: str | None
    last_modified: str | None
    content_hash: str | None


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


class FeedLedger:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    # ---- SKUs the feed owns --------------------------------------------------------------------

    def owned(self) -> dict[str, bool]:
        """{sku: hidden_by_feed} of every SKU the feed has listed."""
        with self._sessions.begin() as session:
            rows = session.execute(select(FeedProduct.sku, FeedProduct.hidden_by_feed))
            return {sku: bool(hidden) for sku, hidden in rows}

    def claim(self, skus: Iterable[str], *, now: datetime) -> int:
        """Record that the feed lists `skus` (seen now); returns how many were new."""
        wanted = sorted(set(skus))
        with self._sessions.begin() as session:
            known: set[str] = set()
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                known.update(
                    session.scalars(select(FeedProduct.sku).where(FeedProduct.sku.in_(chunk)))
                )
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

    def set_hidden(self, sku: str, *, hidden: bool) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(FeedProduct)
                .where(FeedProduct.sku == sku)
                .values(hidden_by_feed=hidden)
                .execution_options(synchronize_session=False)
            )

    # ---- photo validators ----------------------------------------------------------------------

    def images(self) -> list[FeedImageRecord]:
        with self._sessions.begin() as session:
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

    def save_images(self, records: Iterable[FeedImageRecord], *, now: datetime) -> None:
        """Insert or replace what the downloads of (sku, url) returned, all in one transaction."""
        with self._sessions.begin() as session:
            for record in records:
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

    def forget_images(self, sku: str, *, keep: Iterable[str]) -> int:
        """Delete the SKU's validator rows of photo URLs not in `keep` (no longer listed);
        returns how many."""
        kept = {url_hash(url) for url in keep}
        with self._sessions.begin() as session:
            rows = session.scalars(select(FeedImage).where(FeedImage.sku == sku)).all()
            gone = [row for row in rows if row.url_hash not in kept]
            for row in gone:
                session.delete(row)
            return len(gone)

    # ---- sync runs -----------------------------------------------------------------------------

    def start_run(self, *, source: str, forced: bool, now: datetime) -> int:
        with self._sessions.begin() as session:
            row = FeedRun(started_at=now, source=source[:300], status="running", forced=forced)
            session.add(row)
            session.flush()
            return int(row.id)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        counts: dict[str, Any],
        errors: list[dict[str, Any]],
        message: str | None,
        now: datetime,
    ) -> None:
        with self._sessions.begin() as session:
            row = session.get(FeedRun, run_id)
            if row is None:
                return
            row.status, row.counts, row.errors, row.message = status, counts, errors, message
            row.finished_at = now

    def close_killed_runs(self, *, current: int, now: datetime) -> list[tuple[int, datetime]]:
        """Mark every run still "running" but `current` as killed; returns their (id,
        started_at). Call it only while holding the sync's lease."""
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(FeedRun).where(FeedRun.status == "running", FeedRun.id != current)
            ).all()
            for row in rows:
                row.status, row.finished_at = "killed", now
                row.message = f"killed before it finished; closed by run {current}"
            return [(int(row.id), as_utc(row.started_at)) for row in rows]

    def unaudited_additions(self, *, since: datetime, action: str) -> list[str]:
        """SKUs the feed owns whose product was created at or after `since` and has no audit
        row `action` (what a killed run added without saying so), sorted."""
        with self._sessions.begin() as session:
            audited = exists().where(AuditEntry.action == action, AuditEntry.target == Product.sku)
            rows = session.scalars(
                select(Product.sku)
                .join(FeedProduct, FeedProduct.sku == Product.sku)
                .where(Product.created_at >= since, ~audited)
                .order_by(Product.sku)
            )
            return list(rows)

    def last_run(self) -> FeedRunRecord | None:
        with self._sessions.begin() as session:
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
