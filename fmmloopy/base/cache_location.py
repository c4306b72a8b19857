"""Where fmmloopy keeps its per-user caches (kernels, operators, tuning records, compiler probes,
PoCL's kernel cache)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

#: Environment variable overriding the cache directory.
CACHE_ENV = "FMMLOOPY_CACHE_DIR"


def cache_dir() -> Path:
    """The per-user cache directory (not created here): ``$FMMLOOPY_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/fmmloopy``, else ``~/.cache/fmmloopy``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "fmmloopy"


def host_name() -> str:
    """This host's name with every character but letters, digits, ``_`` and ``-`` replaced."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def process_exists(pid: int) -> bool:
    """False only if this host certainly has no process ``pid`` (POSIX ``kill(pid, 0)``)."""
    if os.name != "posix" or pid <= 0:  # on Windows os.kill would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists, as another user's
        return True
    return True
