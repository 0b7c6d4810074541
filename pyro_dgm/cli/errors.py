r"""How ``pyro-dgm`` reports a failure: one ``pyro-dgm: error: ...`` line on stderr and
exit status 2, never a traceback."""

from __future__ import annotations

import sys

__all__ = ["RunError", "report_error"]


class RunError(RuntimeError):
    """A failure of a run whose message says what happened to its folder.

    Example:
        >>> issubclass(RunError, RuntimeError)
        True
    """


def report_error(error: BaseException) -> int:
    """Print ``error`` as one ``pyro-dgm: error:`` line on stderr; return 2.

    Example:
        >>> report_error(ValueError("--epochs: expected an int >= 1, got 0"))  # printed on stderr
        2
    """
    message = " ".join(str(error).split())
    if not isinstance(error, (ValueError, RunError)):
        message = f"{type(error).__name__}: {message}"
    print(f"pyro-dgm: error: {message}", file=sys.stderr)
    return 2
