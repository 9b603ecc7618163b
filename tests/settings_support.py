"""The settings the tests hand to the domain services, as the composition root does: the shipped file with the
environment's ``HOTLINE_*`` overrides, read once for the session."""

from __future__ import annotations

from config import Settings, load_settings

SETTINGS: Settings = load_settings()
