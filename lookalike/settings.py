"""The one place configuration comes from: environment variables and `.env`.

Every key is documented in `.env.example`. Secrets are `SecretStr`, so they print as `**********`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WeightsSpec = str  # "imagenet" | "none" | a path to a local weights file


class Settings(BaseSettings):
    """Lookalike's configuration. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # `KEY=` in .env means "not set", not "set to the empty string".
        env_ignore_empty=True,
        case_sensitive=False,
        # The Keras backbone settings are called model_*; pydantic reserves that prefix.
        protected_namespaces=(),
    )

    database_url: str = "sqlite:///data/lookalike.db"
    media_dir: Path = Path("data/media")
    models_dir: Path = Path("models")
    model_weights: WeightsSpec = "imagenet"
    model_seed: int = 1234
    model_runtime: Literal[
        "auto", "keras", "keras-xla", "openvino", "openvino-bf16", "openvino-int8", "onnxruntime"
    ] = "auto"
    top_k: Annotated[int, Field(ge=1, le=50)] = 8
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "EUR"
    # Cosine distances in the post-processed space (sqrt + centring spreads distances out:
    # raw 0.35 is about 0.65 after it; see docs/evaluation.md).
    weak_match_distance: Annotated[float, Field(gt=0.0, le=2.0)] = 0.65
    near_duplicate_distance: Annotated[float, Field(ge=0.0, le=2.0)] = 0.12
    max_image_bytes: Annotated[int, Field(gt=0)] = 20 * 1024 * 1024
    max_image_pixels: Annotated[int, Field(gt=0)] = 64_000_000
    inference_batch_size: Annotated[int, Field(ge=1, le=256)] = 32
    # Search (issue 6/7): distance, post-processing, where the k-nearest query runs.
    search_metric: Literal["cosine", "euclidean", "inner_product"] = "cosine"
    postprocess: Literal["sqrt-centre", "none"] = "sqrt-centre"
    infer_category: bool = True
    query_expansion: Annotated[int, Field(ge=0, le=20)] = 3
    # Colour in the ranking, after the category step: (1 - w) * VGG + w * colour similarity;
    # 0 = VGG alone. 0.6 chosen by cross-validation on halves of the labelled photos
    # (docs/evaluation.md, "Colour").
    colour_weight: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    vector_search: Literal["auto", "memory", "pgvector"] = "auto"
    hnsw_ef_search: Annotated[int, Field(ge=1, le=1000)] = 100
    index_sync_seconds: Annotated[float, Field(gt=0)] = 2.0
    # Customers' data (issue 16): days a search is kept (then folded into anonymous daily
    # counts); at least 7, since /stats shows the last 7 days from the log itself.
    search_log_retention_days: Annotated[int, Field(ge=7, le=3650)] = 90
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Telegram (used by `lookalike bot` only)
    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    telegram_file_base_url: str = "https://api.telegram.org/file/bot"
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    support_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: Annotated[int, Field(ge=1, le=65535)] = 8443
    webhook_secret_token: SecretStr | None = None
    searches_per_minute: Annotated[int, Field(ge=1)] = 10
    url_fetch_allow_private: bool = False
    url_fetch_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    # The website and HTTP API (`lookalike serve`, package web/)
    web_host: str = "127.0.0.1"
    web_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # Origins allowed to call the API from a browser (CORS), comma-separated; empty: none.
    web_cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Public base URL of this server (https://shop.example/lookalike) for absolute image URLs;
    # None: URLs relative to the request's own host.
    web_public_url: str | None = None
    web_searches_per_minute: Annotated[int, Field(ge=1)] = 20
    web_writes_per_minute: Annotated[int, Field(ge=1)] = 120
    # Salt of the pseudonymous reference a web search is logged under (an HMAC of the
    # client's address); empty: a key generated once and kept in the database, which every
    # instance and restart share (set it only to carry references over to another database).
    web_user_ref_secret: SecretStr | None = None
    # Trust X-Forwarded-For from these proxy addresses (comma-separated), for the per-address
    # rate limit behind a reverse proxy; empty: the socket's peer address is the client.
    web_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()

    # The shop's product feed (`lookalike catalog sync`, package feed/)
    # Google Merchant Center feed (XML RSS/Atom, TSV or CSV) synced every FEED_SYNC_MINUTES by
    # the running bot/web server; None: no scheduled sync.
    feed_url: str | None = None
    feed_sync_minutes: Annotated[int, Field(ge=1)] = 60
    # A feed that would hide more than this share of the catalogue changes nothing unless forced.
    feed_max_hide_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    # TOML file mapping product_type / google_product_category patterns to shop categories;
    # None: the packaged default (feed/default_categories.toml).
    feed_category_map: Path | None = None
    feed_download_concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    feed_image_timeout_seconds: Annotated[float, Field(gt=0)] = 20.0
    feed_image_retries: Annotated[int, Field(ge=0, le=10)] = 2
    feed_max_images_per_product: Annotated[int, Field(ge=1, le=50)] = 10
    feed_max_bytes: Annotated[int, Field(gt=0)] = 512 * 1024 * 1024
    # IANA zone of sale dates written without one (Google applies the country's zone).
    feed_time_zone: str = "UTC"

    @field_validator("feed_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value[:60]!r} (like Europe/Berlin)") from None
        return value

    @field_validator("admin_ids", "support_ids", mode="before")
    @classmethod
    def _parse_id_list(cls, value: object) -> object:
        """Accept "1, 2,3" from the environment as well as a real collection."""
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return frozenset(int(part) for part in parts)
            except ValueError as exc:
                raise ValueError("must be comma-separated numeric Telegram user ids") from exc
        if isinstance(value, int):
            return frozenset({value})
        return value

    @field_validator("web_cors_origins", "web_trusted_proxies", mode="before")
    @classmethod
    def _parse_str_list(cls, value: object) -> object:
        """Accept "a, b" from the environment as well as a real sequence."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables of a child process that must run with
        exactly them: {"DATABASE_URL": "sqlite:///...", "ADMIN_IDS": "1,2", ...}, one per field.

        Secrets are their secret values, in clear: the child needs the real token. Keep the
        result out of logs and error messages. A field that is None is "" (the child reads an
        empty variable as "not set": its default, None), so a value in the parent's own
        environment does not leak through; lists are comma-separated, as the validators above
        read them; booleans are "true" / "false".
        """
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            env[name.upper()] = _env_text(getattr(self, name))
        return env

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the URL is SQLite on disk, else None."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix) :])
        return None


def _env_text(value: object) -> str:
    """One setting's value as the text its environment variable holds."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset):  # ids: sorted, so the same settings give the same text
        return ",".join(str(part) for part in sorted(value))
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return str(value)
