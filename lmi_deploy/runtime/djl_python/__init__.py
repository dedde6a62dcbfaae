"""Our djl_python-compatible ``Input``/``Output`` (the API a custom ``model.py`` imports)."""

from .inputs import Input
from .outputs import Output

__all__ = ["Input", "Output"]
