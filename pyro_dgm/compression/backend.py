r"""The entropy coders: constriction, an optional dependency imported only when a codec runs.

``import pyro_dgm`` and ``import pyro_dgm.compression`` never import it; encoding or
decoding without it raises an ``ImportError`` that names the extra to install.

References:
    | constriction: entropy coders for research and production (Bamler, 2022)
    | https://bamler-lab.github.io/constriction/
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["INSTALL_HINT", "require_constriction"]

#: How to install the coders.
INSTALL_HINT = "pip install pyro-dgm[compress]"


def require_constriction() -> ModuleType:
    """The ``constriction`` module, or an ``ImportError`` that says how to install it.

    Example:
        >>> require_constriction().__name__  # installed with pyro-dgm[compress]
        'constriction'
    """
    try:
        import constriction
    except ImportError as error:  # also when sys.modules["constriction"] is None
        raise ImportError(
            "pyro_dgm.compression needs the entropy coders of the constriction package, which "
            f"is not installed: {INSTALL_HINT} (or pip install constriction)"
        ) from error
    return constriction
