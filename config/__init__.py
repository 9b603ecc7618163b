"""Settings, shipped defaults, Asterisk templates, dispatch catalogue and sample knowledge base."""

from config.errors import HotlineError
from config.settings import Settings, SettingsError, config_path, load_settings

__all__ = ["HotlineError", "Settings", "SettingsError", "config_path", "load_settings"]
