"""What the web app is told by whoever assembles it (serve.py reads Settings; tests pass
their own), so the app itself never reads the environment."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.settings import Settings

THUMBNAIL_WIDTHS = (160, 320, 640)  # the only widths /media/...?w= accepts


@dataclass(frozen=True, slots=True)
class WebConfig:
    cors_origins: tuple[str, ...] = ()
    public_url: str | None = None  # "https://shop.example/lookalike": absolute image URLs
    searches_per_minute: int = 20  # per client address, shared by every instance
    writes_per_minute: int = 120  # per API key
    # Key of the HMAC that turns a client address into the pseudonymous user_ref searches are
    # logged, voted and rate-limited under (the address itself is never stored). None: the
    # installation's own, generated once and kept in the database (app_secrets), so every
    # instance and every restart agree without configuration.
    user_ref_key: bytes | None = None
    trusted_proxies: tuple[str, ...] = ()
    url_fetch_timeout_seconds: float = 10.0
    url_fetch_allow_private: bool = False  # tests only: image URLs on 127.0.0.1
    # How often catalogue changes made by other processes reach this one's in-memory index.
    index_sync_seconds: float = 2.0


def web_config_from_settings(settings: Settings) -> WebConfig:
    secret = settings.web_user_ref_secret
    key = (
        b"lookalike-web-user-ref\0" + secret.get_secret_value().encode()
        if secret is not None and secret.get_secret_value()
        else None
    )
    return WebConfig(
        cors_origins=settings.web_cors_origins,
        public_url=settings.web_public_url.rstrip("/") if settings.web_public_url else None,
        searches_per_minute=settings.web_searches_per_minute,
        writes_per_minute=settings.web_writes_per_minute,
        user_ref_key=key,
        trusted_proxies=settings.web_trusted_proxies,
        url_fetch_timeout_seconds=settings.url_fetch_timeout_seconds,
        url_fetch_allow_private=settings.url_fetch_allow_private,
        index_sync_seconds=settings.index_sync_seconds,
    )
