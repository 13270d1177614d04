"""Configuration: one pydantic schema (schema.py) and one loader (loader.py)."""

from tidegate.config.loader import ConfigError, load_config, validate_config_file
from tidegate.config.schema import AppConfig

__all__ = ["AppConfig", "ConfigError", "load_config", "validate_config_file"]
