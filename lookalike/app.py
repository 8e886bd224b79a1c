"""Assembly of the search service from Settings, shared by the command line and the bot."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from db.media import MediaStore
from lookalike.settings import Settings
from search.featurizer import Featurizer
from search.service import SearchService

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, stream=sys.stderr)
    # httpx logs every request URL at INFO, and a Bot API URL contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


class RedactingFilter(logging.Filter):
    """Replaces secrets (the bot token) in every log line, including tracebacks."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg = message.replace(self.secret, "[REDACTED]")
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if self.secret in text:
                record.msg = f"{record.msg}\n{text.replace(self.secret, '[REDACTED]')}"
                record.exc_info = None
                record.exc_text = None
        return True


def redact_secret_in_logs(secret: str) -> None:
    """Install a RedactingFilter for `secret` on every handler of the root logger."""
    if not secret:
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=LOG_FORMAT)
    for handler in root.handlers:
        handler.addFilter(RedactingFilter(secret))


def featurizer_provider(settings: Settings) -> Callable[[], Featurizer]:
    def load() -> Featurizer:
        # Imported here: TensorFlow takes seconds to import and most commands never need it.
        from search.extractor import VGG16Extractor

        return VGG16Extractor.load(
            models_dir=settings.models_dir, weights=settings.model_weights, seed=settings.model_seed
        )

    return load


def open_service(
    settings: Settings, *, featurizer: Callable[[], Featurizer] | None = None
) -> SearchService:
    """The database brought up to date, the index loaded; the model loads on first use
    (from `featurizer`, by default the VGG16 the settings describe)."""
    return SearchService.open(
        database_url=settings.database_url,
        media=MediaStore(settings.media_dir),
        featurizer_provider=featurizer or featurizer_provider(settings),
        model_name=settings.model_name,
        top_k=settings.top_k,
        near_duplicate_distance=settings.near_duplicate_distance,
        max_image_pixels=settings.max_image_pixels,
        max_image_bytes=settings.max_image_bytes,
    )
