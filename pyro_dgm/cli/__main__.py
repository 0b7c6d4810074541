"""``python -m pyro_dgm.cli``: the ``pyro-dgm`` command."""

from . import main

if __name__ == "__main__":  # not on import (e.g. by the docs' autosummary)
    raise SystemExit(main())
