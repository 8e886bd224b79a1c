"""The web server's commands: `serve` and `api-key create|list|revoke`. `register(commands)`
adds them to an argparse subparsers object; each runs as `handler(args, settings) -> exit code`.
"""

from __future__ import annotations

import argparse
from typing import Any

from db import ApiKeyError, ApiKeys, create_db_engine, create_session_factory, ensure_up_to_date
from lookalike.settings import Settings
from web.keys import utc_now


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the website and HTTP API (search-by-photo page, /api/v1, /docs)",
        description="Serves the search page on /, the API under /api/v1 (OpenAPI docs on "
        "/docs), product images on /media, and /healthz, /readyz, /metrics.",
    )
    serve.add_argument("--host", help="address to listen on (default WEB_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default WEB_PORT)")
    serve.set_defaults(handler=cmd_serve)

    api_key = commands.add_parser("api-key", help="API keys for the catalogue write API")
    actions = api_key.add_subparsers(dest="api_key_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print its secret (once)")
    create.add_argument("name", help="who or what uses the key, e.g. back-office")
    actions.add_parser("list", help="keys with their state (never the secrets)")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("name", help="the key's name (or id)")
    api_key.set_defaults(handler=cmd_api_key)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from web.serve import serve  # uvicorn and the engine only for this command

    return serve(settings, host=args.host, port=args.port)


def cmd_api_key(args: argparse.Namespace, settings: Settings) -> int:
    database = create_db_engine(settings.database_url)
    try:
        ensure_up_to_date(database)
        keys = ApiKeys(create_session_factory(database))
        if args.api_key_action == "create":
            new = keys.create(args.name, now=utc_now())
            print(f"created API key {new.record.id} {new.record.name!r}. Its secret (shown once,")
            print("store it now; send it as 'Authorization: Bearer <secret>'):")
            print(new.secret)
        elif args.api_key_action == "list":
            records = keys.list()
            if not records:
                print("no API keys yet: lookalike api-key create NAME")
            for record in records:
                revoked = record.revoked_at
                state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "active"
                used = f"{record.last_used_at:%Y-%m-%d %H:%M}" if record.last_used_at else "never"
                print(
                    f"{record.id:>4}  {record.name:<24} {record.prefix}…  {state:<24} "
                    f"created {record.created_at:%Y-%m-%d %H:%M}, last used {used}"
                )
        else:
            record = keys.revoke(args.name, now=utc_now())
            print(f"revoked API key {record.id} {record.name!r}")
        return 0
    except ApiKeyError as error:
        print(f"error: {error}")
        return 2
    finally:
        database.dispose()
