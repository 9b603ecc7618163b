"""Settings, shipped defaults, Asterisk templates, dispatch catalogue and sample knowledge base."""

from config.settings import Settings, SettingsError, config_path, load_settings

__all__ = ["Settings", "SettingsError", "config_path", "load_settings"]
