"""Deprecated: ``pyro-dgm evaluate`` moved to :mod:`pyro_dgm.cli.evaluate`.

The diagnostics package holds library functions only; these names are forwarded
to the command-line package for one release, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = ["add_evaluate_parser", "evaluate_command", "run_evaluate"]  # noqa: F822 (forwarded)


def __getattr__(name: str) -> Any:
    if name in __all__:
        warnings.warn(
            f"pyro_dgm.diagnostics.report.{name} moved to pyro_dgm.cli.evaluate.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("pyro_dgm.cli.evaluate"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
