"""``python -m pyro_dgm.cli``: the ``pyro-dgm`` command."""

from . import main

raise SystemExit(main())
