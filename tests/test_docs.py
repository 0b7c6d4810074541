"""The landing page: its getting-started snippets run as they stand in docs/index.rst and
land on the right side of the known limits; the layers figure draws the layers of
docs/layers.rst."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import matplotlib.pyplot as plt
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pyro_dgm import datasets

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _figures_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyro_dgm_docs_figures", DOCS / "figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


figures = _figures_module()
SNIPPETS = figures.snippets()
INDEX = (DOCS / "index.rst").read_text(encoding="utf-8")


def test_the_landing_page_has_the_four_snippets_each_with_its_figure() -> None:
    assert list(SNIPPETS) == [
        "gs-flow-prior",
        "gs-flow-guide",
        "gs-vae-iaf",
        "gs-dequantized-flow",
    ]
    for name, code in SNIPPETS.items():
        assert len(code.strip().splitlines()) <= 16, name  # "about ten lines"
        # the figure drawn by this snippet follows it on the page and is committed
        after = INDEX[INDEX.index(f":name: {name}") :]
        image = re.search(r"\.\. image:: (\S+)", after)
        assert image and image[1] == f"_figures/{name}.png", name
        following = after.find(".. code-block::")
        assert following == -1 or after.index(".. image::") < following, name
        assert (DOCS / image[1]).stat().st_size > 5000, name
    assert "image:: _figures/layers.png" in INDEX
    assert (DOCS / "_figures" / "layers.png").stat().st_size > 5000


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_flow_prior_snippet() -> None:
    ns = figures.run_snippet(SNIPPETS["gs-flow-prior"], "gs-flow-prior")
    test = ns["test"]
    assert isinstance(ns["ax"], Axes) and test.bound == "exact"
    # better than a standard normal fit, never better than the data's entropy
    assert -test.nats < 2.0
    assert -test.nats > datasets.toy_entropy("two_moons") - 4 * test.stderr


def test_flow_guide_snippet() -> None:
    ns = figures.run_snippet(SNIPPETS["gs-flow-guide"], "gs-flow-guide")
    log_z = datasets.ENERGY_LOG_Z["U1"]
    assert 0.5 < ns["bound"] < log_z  # a trained guide, and the ELBO stays below log Z
    assert ns["z"].shape == (500, 2)


def test_vae_iaf_snippet() -> None:
    ns = figures.run_snippet(SNIPPETS["gs-vae-iaf"], "gs-vae-iaf")
    assert ns["grid"].shape == (24, 1, 8, 8)
    assert ns["bpd"] < 3.5  # well below uniform coding of 17 levels, 4.09 bits/dim


def test_dequantized_flow_snippet() -> None:
    ns = figures.run_snippet(SNIPPETS["gs-dequantized-flow"], "gs-dequantized-flow")
    assert ns["bpd"] < 3.5


def test_layers_figure_draws_the_layers_of_layers_rst() -> None:
    text = (DOCS / "layers.rst").read_text(encoding="utf-8")
    block = text[text.index(".. code-block:: text") : text.index("A module may import")]
    rst_layers: dict[int, set[str]] = {}
    number = None
    for line in block.splitlines()[1:]:
        m = re.match(r"^    (\d)  (\w+)", line)
        if m:
            number = int(m[1])
            rst_layers[number] = {m[2]}
        # a second column on the same line, or a second name on a continuation line
        for other in re.findall(r"\s{3,}(\w+)\s{2,}[a-z]", line[8:]):
            if number is not None and other in {"plots", "datasets", "distributions"}:
                rst_layers[number].add(other)
        m = re.match(r"^       (\w+)\s{2,}", line)
        if m and number is not None:
            rst_layers[number].add(m[1])
    drawn = {layer.number: set(layer.names) for layer in figures.LAYERS}
    assert drawn == rst_layers
    fig = figures.draw_layers()
    assert isinstance(fig, Figure)
    labels = {t.get_text() for t in fig.axes[0].texts}
    for layer in figures.LAYERS:
        assert "  ·  ".join(layer.names) in labels
