"""The settings a ticket service uses when its caller passes none.

``config.load_settings()`` reads and validates the TOML file (about 2 ms); a service called hundreds of times a
second must not pay that on every call. The loaded object is kept for as long as the file (its path and
modification time) and the ``HOTLINE_*`` environment stay the same.
"""

from __future__ import annotations

import os

from config import Settings, load_settings
from config.settings import ENV_PREFIX, SHIPPED_TOML

_cache: dict[tuple[object, ...], Settings] = {}


def default_settings() -> Settings:
    """``load_settings()``, read again only when the configuration file or the environment changed."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    path = os.environ.get(f"{ENV_PREFIX}CONFIG") or str(SHIPPED_TOML)
    try:
        stamp: object = os.stat(path).st_mtime_ns
    except OSError:
        stamp = None  # load_settings reports the unreadable file
    key = (env, path, stamp)
    settings = _cache.get(key)
    if settings is None:
        settings = load_settings()
        _cache.clear()
        _cache[key] = settings
    return settings
