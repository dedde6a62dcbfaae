"""The one error type users see: a message that says what was wrong and how to fix it."""


class ConfigError(Exception):
    """A deployment cannot be built as asked. ``str(error)`` is meant to be printed as is, without a traceback."""


# The rule id of inputs that cannot be read at all (registered in lmi_deploy.rules.settings); kept here so that the
# readers (config, model facts) can tag their messages without importing the registry.
UNREADABLE_INPUT = "LMI004"
