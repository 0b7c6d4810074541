"""Write the API reference: one page per module family (``docs/reference/<family>.rst``).

Each page opens with the family's package docstring (its equations), then documents
every name the package exports (``__all__``) in full, with its equations, references and
example, then each module of the family: its docstring and the public names it does not
re-export at the package level. So every public class and function has its whole
docstring on exactly one page.

Usage: ``python docs/make_api.py [OUT]`` (default ``docs/reference``). The pages are
committed; ``tests/test_api_docs.py`` checks that they are what this script writes.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The families, in the order of the API page, with their titles.
FAMILIES = {
    "pyro_dgm.transforms": "Transforms",
    "pyro_dgm.flows": "Flows",
    "pyro_dgm.distributions": "Distributions",
    "pyro_dgm.nn": "Networks",
    "pyro_dgm.models": "Models",
    "pyro_dgm.models.vae": "VAE parts",
    "pyro_dgm.datasets": "Data sets",
    "pyro_dgm.infer": "Inference",
    "pyro_dgm.compression": "Compression",
    "pyro_dgm.diagnostics": "Diagnostics",
    "pyro_dgm.plots": "Plots",
    "pyro_dgm.cli": "Command line",
    "pyro_dgm.utils": "Utilities",
}


def exported_names(module: object) -> list[str]:
    """Everything the module's ``__all__`` lists (classes, functions and constants)."""
    return list(getattr(module, "__all__", []))


def submodules(family: str) -> list[str]:
    """The modules of a family, without the subpackages that are families of their own
    (and without ``__main__``, which runs the command line when imported)."""
    package = importlib.import_module(family)
    if not hasattr(package, "__path__"):
        return []
    others = [f for f in FAMILIES if f != family and f.startswith(family + ".")]
    return sorted(
        info.name
        for info in pkgutil.walk_packages(package.__path__, family + ".")
        if "__" not in info.name
        and not any(info.name == f or info.name.startswith(f + ".") for f in others)
    )


def family_page(family: str) -> str:
    """The reST of one family's page."""
    title = FAMILIES[family]
    package = importlib.import_module(family)
    top = set(exported_names(package))
    # a class or function of another family, re-exported here, is documented there
    elsewhere = sorted(n for n in top if _family_of(getattr(package, n)) not in (None, family))
    lines = [title, "=" * len(title), "", f".. automodule:: {family}", "    :members:"]
    if elsewhere:
        lines += [f"    :exclude-members: {', '.join(elsewhere)}"]
    lines += [""]
    if elsewhere:
        refs = ", ".join(f":obj:`~{_canonical(getattr(package, n))}`" for n in elsewhere)
        lines += [f"Also exported here, and documented with their own family: {refs}.", ""]
    documented = {f"{family}.{n}" for n in top}
    for name in submodules(family):
        module = importlib.import_module(name)
        extra = [n for n in exported_names(module) if n not in top and _defined_in(module, n)]
        heading = f"``{name}``"
        lines += [heading, "-" * len(heading), "", f".. automodule:: {name}"]
        if extra:
            lines += [f"    :members: {', '.join(extra)}"]
        if name in documented:  # the module shares its name with a function it exports
            lines += ["    :no-index:"]
        lines += [""]
    return "\n".join(lines)


def _canonical(value: object) -> str:
    """Where autodoc documents a class or function: the family that exports it."""
    family = _family_of(value)
    return f"{family}.{value.__name__}" if family else value.__name__


def _family_of(value: object) -> str | None:
    """The family whose modules define a class or function (the longest matching
    family name), or ``None`` for anything else."""
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return None
    owner = getattr(value, "__module__", "")
    matches = [f for f in FAMILIES if owner == f or owner.startswith(f + ".")]
    return max(matches, key=len) if matches else None


def _defined_in(module: object, name: str) -> bool:
    """Whether ``module`` defines ``name`` (a constant counts), rather than re-exporting a
    class or function of another module, which that module's section documents."""
    value = getattr(module, name)
    owner = getattr(value, "__module__", None)
    return not (inspect.isclass(value) or inspect.isfunction(value)) or owner == module.__name__


def pages() -> dict[str, str]:
    """File name to reST, for every page of the reference."""
    return {f"{family.removeprefix('pyro_dgm.')}.rst": family_page(family) for family in FAMILIES}


def _write(path: Path, text: str) -> None:
    """Write ``text`` atomically: a temporary file in the same folder, then a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".rst")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(out: Path) -> None:
    """Write every page into ``out``, and remove pages of families that are gone."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = pages()
    for stale in {p.name for p in out.glob("*.rst")} - set(wanted):
        (out / stale).unlink()
    for name, text in wanted.items():
        _write(out / name, text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "reference")
