"""Sphinx configuration (zuko-style: autodoc + autosummary + napoleon + myst-nb, furo)."""

import os
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root))

import pyro_dgm

project = "pyro_dgm"
author = "pyro_dgm developers"
release = version = pyro_dgm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "myst_nb",
]
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autosummary_generate = True
napoleon_google_docstring = True
# Links to Python's, torch's and Pyro's docs need their inventories from the network. CI
# and offline builds (PYRO_DGM_DOCS_OFFLINE or CI set) go without them, so a build with
# warnings as errors (-W) does not depend on the network; local builds keep the links.
OFFLINE = bool(os.environ.get("PYRO_DGM_DOCS_OFFLINE") or os.environ.get("CI"))
intersphinx_mapping = (
    {}
    if OFFLINE
    else {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://pytorch.org/docs/stable", None),
        "pyro": ("https://docs.pyro.ai/en/stable", None),
    }
)
nb_execution_mode = "off"  # notebooks keep their outputs; CI executes them with nbmake
html_theme = "furo" if os.environ.get("PYRO_DGM_DOCS_THEME", "furo") == "furo" else "alabaster"
html_title = f"pyro_dgm {version}"
exclude_patterns = [
    "_build",
    "jupyter_execute",
]  # myst-nb writes notebook outputs beside the build folder

# the results page is generated from benchmarks/results/ at every build, never typed by hand
sys.path.insert(0, str(Path(__file__).parent))
import make_api
from make_results import write_results

write_results(Path(__file__).parent / "results.md")
# the API pages follow the package's __all__ lists at every build (tests check they are
# what make_api writes, so the committed pages never go stale either)
make_api.main(Path(__file__).parent / "reference")

# tutorials/ lives at the top of the repository; expose it to Sphinx as docs/tutorials
link = Path(__file__).parent / "tutorials"
if not link.exists():
    link.symlink_to(root / "tutorials", target_is_directory=True)
