"""The API reference stays true: every public class and function of pyro_dgm has a
runnable example, each family page is what docs/make_api.py writes and opens with
the family's equations, and the tutorials keep their outputs for the site."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: The packages whose every public class and function has an example (and whose
#: docstrings this test holds to it): all of pyro_dgm, every module found by walking it,
#: so a new module is covered the day it is added.
COVERED = ("pyro_dgm",)

#: The families whose package docstring opens their page with equations: every family
#: but the utilities (argument checks, registration and the zuko import), which have none.
FAMILIES_WITH_MATH = (
    "pyro_dgm.transforms",
    "pyro_dgm.flows",
    "pyro_dgm.distributions",
    "pyro_dgm.nn",
    "pyro_dgm.models",
    "pyro_dgm.models.vae",
    "pyro_dgm.datasets",
    "pyro_dgm.infer",
    "pyro_dgm.compression",
    "pyro_dgm.diagnostics",
    "pyro_dgm.plots",
    "pyro_dgm.cli",
)


def _modules(name: str) -> list[ModuleType]:
    module = importlib.import_module(name)
    found = [module]
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, name + "."):
            if "__" not in info.name:  # not cli.__main__, which runs the command
                found.append(importlib.import_module(info.name))
    return found


def public_objects(names: tuple[str, ...] = COVERED) -> dict[str, object]:
    """Every class and function that a covered module lists in ``__all__`` and defines."""
    out = {}
    for name in names:
        for module in _modules(name):
            for attr in getattr(module, "__all__", ()):
                value = getattr(module, attr)
                is_code = inspect.isclass(value) or inspect.isfunction(value)
                if is_code and value.__module__ == module.__name__:
                    out[f"{module.__name__}.{attr}"] = value
    return out


def test_every_public_class_and_function_has_an_example() -> None:
    objects = public_objects()
    assert len(objects) > 250  # the covered packages are found
    missing = sorted(name for name, obj in objects.items() if ">>>" not in (obj.__doc__ or ""))
    assert not missing, "public names without an example (>>>) in their docstring:\n" + (
        "\n".join(missing)
    )


def test_every_package_and_family_is_covered() -> None:
    """The walk reaches every subpackage of pyro_dgm and every family of the API pages."""
    modules = {m.__name__ for m in _modules("pyro_dgm")}
    package = importlib.import_module("pyro_dgm")
    subpackages = {
        info.name for info in pkgutil.walk_packages(package.__path__, "pyro_dgm.") if info.ispkg
    }
    assert subpackages and subpackages <= modules
    assert set(make_api.FAMILIES) <= modules
    owners = {name.rsplit(".", 1)[0] for name in public_objects()}
    for family in make_api.FAMILIES:
        assert any(o == family or o.startswith(family + ".") for o in owners), family
    assert set(FAMILIES_WITH_MATH) | {"pyro_dgm.utils"} == set(make_api.FAMILIES)


def test_the_check_finds_a_name_without_an_example(monkeypatch) -> None:
    from pyro_dgm.models import flow_model

    def bare() -> None:
        """No example here."""

    bare.__module__ = flow_model.__name__
    monkeypatch.setattr(flow_model, "bare", bare, raising=False)
    monkeypatch.setattr(flow_model, "__all__", [*flow_model.__all__, "bare"])
    objects = public_objects(("pyro_dgm.models.flow_model",))
    assert ">>>" not in objects["pyro_dgm.models.flow_model.bare"].__doc__


def _make_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyro_dgm_docs_make_api", DOCS / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_api = _make_api()


def test_family_pages_are_what_make_api_writes() -> None:
    pages = make_api.pages()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.rst")}
    stale = sorted(n for n in pages if on_disk.get(n) != pages[n])
    assert not stale and set(on_disk) == set(pages), (
        f"docs/reference is out of date ({stale or sorted(set(on_disk) ^ set(pages))}): "
        "run python docs/make_api.py"
    )
    api = (DOCS / "api.rst").read_text(encoding="utf-8")
    listed = re.findall(r"^    reference/(\S+)$", api, re.MULTILINE)
    assert listed == [n.removesuffix(".rst") for n in pages]


def _documented(page: str, module: str) -> set[str] | None:
    """The names the page documents with ``.. automodule:: module`` (``None``: all of
    the module's ``__all__``, less those excluded)."""
    m = re.search(rf"^\.\. automodule:: {re.escape(module)}\n((?:    :.*\n)*)", page, re.MULTILINE)
    if not m:
        return set()
    options = dict(re.findall(r"    :([a-z-]+):(.*)", m[1]))
    if "members" not in options:
        return set()
    listed = {n.strip() for n in options["members"].split(",") if n.strip()}
    if not listed:
        excluded = {n.strip() for n in options.get("exclude-members", "").split(",")}
        listed = set(getattr(importlib.import_module(module), "__all__", ())) - excluded
    return listed


def test_every_public_name_is_documented_on_a_family_page() -> None:
    pages = make_api.pages()
    text = "\n".join(pages.values())
    undocumented = []
    for name in public_objects():
        module, attr = name.rsplit(".", 1)
        owners = [module] + [f for f in make_api.FAMILIES if module.startswith(f + ".")]
        if not any(attr in _documented(text, owner) for owner in owners):
            undocumented.append(name)
    assert not undocumented, undocumented


@pytest.mark.parametrize("family", FAMILIES_WITH_MATH)
def test_family_page_opens_with_the_familys_equations(family: str) -> None:
    doc = importlib.import_module(family).__doc__ or ""
    assert ".. math::" in doc or ":math:" in doc, family
    page = make_api.pages()[f"{family.removeprefix('pyro_dgm.')}.rst"]
    first = page.splitlines()[3]
    assert first == f".. automodule:: {family}"  # the page starts with that docstring


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tutorials").glob("*.ipynb")), ids=lambda p: p.name
)
def test_tutorials_keep_their_outputs_for_the_site(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [
        c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()
    ]
    assert code
    assert all(c.get("outputs") for c in code), f"{path.name}: a code cell without stored output"
    images = [o for c in code for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: no stored figure"
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert 'nb_execution_mode = "off"' in conf  # the site shows the stored outputs
    assert "tutorials/*" in (DOCS / "tutorials.rst").read_text(encoding="utf-8")
