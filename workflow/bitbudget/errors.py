"""Errors that stop a run before any job, naming what to fix."""


class ConfigError(ValueError):
    """A config value is wrong; the message names the field and the fix."""
