"""Downloading the feed's product photos: concurrent, conditional, retried, and bounded.

Every download goes through the engine's SSRF-safe fetcher (search.urlfetch), with its
timeout, size limit and redirect checks; the pixel limits are the import's (the engine's
image checks). A photo stored by an earlier sync is asked for with If-None-Match /
If-Modified-Since, so an unchanged one is neither downloaded nor featurised again.

`download` yields results in the order they finish, so a slow host delays only its own
products; at most `concurrency` requests run at once and at most `concurrency` finished
results wait for the consumer (the featurisation), so memory stays bounded however long the
feed. A failure that may pass (timeout, broken connection, HTTP 429/5xx) is retried after
a growing pause; a host that keeps timing out (HOST_FAILURE_LIMIT times in a row) is given
up for the rest of the sync rather than holding every worker for its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from feed.diff import ImageJob
from search import FetchedImage, UrlFetchError, fetch_image_conditional

log = logging.getLogger(__name__)

HOST_FAILURE_LIMIT = 3


@dataclass(frozen=True, slots=True)
class FetchOptions:
    max_bytes: int
    timeout_seconds: float
    allow_private: bool
    retries: int = 2
    backoff_seconds: float = 0.5  # first pause; doubled for each further attempt


@dataclass(frozen=True, slots=True)
class Download:
    """A job's outcome: `fetched` (its data None when not modified) or an `error`."""

    job: ImageJob
    fetched: FetchedImage | None
    error: str | None = None


class _HostHealth:
    """Consecutive retryable failures per host; a host over the limit is skipped."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}

    def given_up(self, host: str) -> bool:
        return self._failures.get(host, 0) >= HOST_FAILURE_LIMIT

    def record(self, host: str, *, failed: bool) -> None:
        self._failures[host] = self._failures.get(host, 0) + 1 if failed else 0


async def fetch_with_retries(
    job: ImageJob, options: FetchOptions, health: _HostHealth | None = None
) -> Download:
    host = urlsplit(job.url).hostname or ""
    health = health or _HostHealth()
    conditional = job.conditional
    for attempt in range(options.retries + 1):
        if health.given_up(host):
            return Download(job, None, f"the image host {host[:60]} keeps failing; skipped")
        try:
            fetched = await fetch_image_conditional(
                job.url,
                max_bytes=options.max_bytes,
                timeout=options.timeout_seconds,
                allow_private=options.allow_private,
                etag=conditional.etag if conditional else None,
                last_modified=conditional.last_modified if conditional else None,
            )
        except UrlFetchError as exc:
            health.record(host, failed=exc.retryable)
            if not exc.retryable or attempt == options.retries:
                return Download(job, None, str(exc).rstrip("."))
            pause = options.backoff_seconds * 2**attempt * (0.5 + random.random())
            log.info("feed image %s: %s; retrying in %.1f s", job.url[:200], exc, pause)
            await asyncio.sleep(pause)
            continue
        health.record(host, failed=False)
        return Download(job, fetched)
    raise AssertionError("unreachable: the last attempt returns")


async def download(
    jobs: Iterable[ImageJob], options: FetchOptions, *, concurrency: int
) -> AsyncIterator[Download]:
    """Each job's Download, in the order they finish."""
    source = iter(jobs)
    results: asyncio.Queue[Download | None] = asyncio.Queue(maxsize=concurrency)
    health = _HostHealth()
    failures: list[Exception] = []

    async def worker() -> None:
        try:
            for job in source:  # one shared iterator: each job is taken by one worker
                await results.put(await fetch_with_retries(job, options, health))
        except Exception as exc:  # unexpected: reported to the consumer below
            failures.append(exc)
        await results.put(None)  # not reached when cancelled: nobody is reading then

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        running = len(workers)
        while running:
            item = await results.get()
            if item is None:
                running -= 1
                continue
            yield item
        if failures:
            raise failures[0]
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
