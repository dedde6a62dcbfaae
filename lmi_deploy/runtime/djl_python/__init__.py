"""Our djl_python-compatible ``Input``/``Output`` (the API a custom ``model.py`` imports)."""

from djl_python.inputs import Input
from djl_python.outputs import Output

__all__ = ["Input", "Output"]
