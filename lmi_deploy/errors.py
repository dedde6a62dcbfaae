"""The one error type users see: a message that says what was wrong and how to fix it."""


class ConfigError(Exception):
    """A deployment cannot be built as asked. ``str(error)`` is meant to be printed as is, without a traceback."""
