"""The one place configuration comes from: environment variables and `.env`.

Every key is documented in `.env.example`. Secrets are `SecretStr`, so they print as `**********`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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
        "auto", "keras", "keras-xla", "openvino", "openvino-bf16", "onnxruntime"
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
    vector_search: Literal["auto", "memory", "pgvector"] = "auto"
    hnsw_ef_search: Annotated[int, Field(ge=1, le=1000)] = 100
    index_sync_seconds: Annotated[float, Field(gt=0)] = 2.0
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

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    @property
    def model_name(self) -> str:
        """The name vectors are stored under: backbone plus pooling (one per model in the DB)."""
        return "vgg16_avgpool"

    @property
    def sqlite_path(self) -> Path | None:
        """The database file when the URL is SQLite on disk, else None."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix) :])
        return None
