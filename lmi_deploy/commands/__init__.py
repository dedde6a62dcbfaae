"""What each ``lmi-deploy`` subcommand does: one module each with ``main(argv) -> int`` (``scripts/<name>.py`` is a
wrapper that calls it)."""
