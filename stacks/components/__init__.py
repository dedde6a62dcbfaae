"""One AWS component per module; each construct takes ``(scope, construct_id, *, config, ...)``."""
