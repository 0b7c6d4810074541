"""Draw the landing page's figures: the layers of pyro_dgm, and the held-out figure of each
getting-started snippet of ``docs/index.rst``, by running that very snippet.

Run from the repository root (the PNGs are committed; rerun after changing a snippet or
the layers)::

    python docs/figures.py            # every figure into docs/_figures/
    python docs/figures.py layers     # only the layers

``tests/test_docs.py`` runs every snippet as it stands in ``index.rst`` and checks that
the layers drawn here are those of ``docs/layers.rst``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

DOCS = Path(__file__).resolve().parent
FIGURES = DOCS / "_figures"


@dataclass(frozen=True)
class Layer:
    """One layer of the package: its number, its subpackages, what they hold, and what
    each is in Pyro's own terms."""

    number: int
    names: tuple[str, ...]
    holds: str
    in_pyro: str


#: The layers of ``docs/layers.rst``, bottom to top (``tests/test_docs.py`` compares them).
LAYERS = (
    Layer(0, ("utils",), "argument checks, registration, the guarded zuko import", ""),
    Layer(
        1, ("nn", "datasets"), "plain torch networks; bundled or generated data", "torch.nn.Module"
    ),
    Layer(
        2,
        ("transforms",),
        "coupling, autoregressive, linear, ActNorm, logit, Sylvester, image, zuko bridge",
        "(Conditional)TransformModule",
    ),
    Layer(
        3,
        ("flows", "distributions"),
        "flows (a module returning a distribution); discretized, PixelCNN, WaveNet",
        "TorchDistribution: pyro.sample",
    ),
    Layer(
        4,
        ("models",),
        "FlowModel, AutoregressiveModel, VAE, dequantization, EnergyModel + FlowGuide",
        "model / guide pair for SVI",
    ),
    Layer(
        5, ("infer",), "fit, checkpoints, log-likelihoods and bounds, bits/dim", "SVI, ELBO, IWAE"
    ),
    Layer(
        6,
        ("diagnostics", "plots", "compression"),
        "ELBO surgery, PSIS k-hat, ArviZ; matplotlib figures; the models as lossless codecs",
        "Predictive, ArviZ data",
    ),
    Layer(7, ("cli",), "pyro-dgm fit / evaluate: a run folder and its report", ""),
)


def draw_layers() -> Figure:
    """The layers as a stack of bars, each made of the ones below it, with what each one
    is to Pyro on the right."""
    fig, ax = plt.subplots(figsize=(10.0, 5.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.6, len(LAYERS) + 0.2)
    ax.axis("off")
    colours = plt.get_cmap("viridis")
    for layer in LAYERS:
        y = layer.number
        colour = colours(0.15 + 0.7 * layer.number / (len(LAYERS) - 1))
        box = FancyBboxPatch(
            (0.1, y + 0.08),
            7.1,
            0.84,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=colour,
            edgecolor="none",
            alpha=0.85,
        )
        ax.add_patch(box)
        text_colour = "white" if layer.number < 5 else "black"
        ax.text(0.3, y + 0.5, str(layer.number), va="center", fontsize=12, color=text_colour)
        ax.text(
            0.7,
            y + 0.62,
            "  ·  ".join(layer.names),
            va="center",
            fontsize=12,
            fontweight="bold",
            color=text_colour,
        )
        ax.text(0.7, y + 0.3, layer.holds, va="center", fontsize=8.5, color=text_colour)
        if layer.in_pyro:
            ax.annotate(
                layer.in_pyro,
                xy=(7.25, y + 0.5),
                xytext=(7.55, y + 0.5),
                va="center",
                fontsize=9,
                family="monospace",
                arrowprops={"arrowstyle": "-", "color": "0.5"},
            )
    ax.text(7.55, len(LAYERS) - 0.05, "what it is to Pyro", fontsize=10, fontstyle="italic")
    ax.text(
        0.1,
        -0.35,
        "each layer is built from the ones below it and imports none above "
        "(tests/test_layers.py reads every import)",
        fontsize=8.5,
        color="0.3",
    )
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# the getting-started snippets of index.rst
# ---------------------------------------------------------------------------

_BLOCK = re.compile(
    r"^\.\. code-block:: python\n    :name: (?P<name>gs-[a-z-]+)\n\n(?P<body>(?:(?:    .*)?\n)+)",
    re.MULTILINE,
)


def snippets(index: Path = DOCS / "index.rst") -> dict[str, str]:
    """The getting-started snippets of ``index.rst`` by name (the code blocks whose
    ``:name:`` starts with ``gs-``), as runnable code."""
    text = index.read_text(encoding="utf-8")
    return {m["name"]: textwrap.dedent(m["body"]).strip() + "\n" for m in _BLOCK.finditer(text)}


def run_snippet(code: str, name: str = "snippet") -> dict[str, object]:
    """Run one snippet from a clean start (seeds, an empty param store, one thread) and
    return its variables; its figure is the Axes ``ax``."""
    import pyro
    import torch

    torch.set_num_threads(1)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    namespace: dict[str, object] = {"__name__": f"docs.{name}"}
    exec(compile(code, f"<docs/index.rst:{name}>", "exec"), namespace)  # noqa: S102 (our docs)
    ax = namespace.get("ax")
    if not isinstance(ax, Axes):
        raise ValueError(f"{name}: a snippet must end with its figure in `ax`, got {ax!r:.60}")
    return namespace


def _save(fig: Figure, path: Path) -> None:
    """Write ``fig`` atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    plt.close(fig)


def main(argv: list[str]) -> None:
    """Draw the figures named in ``argv`` (``layers`` or a snippet's name), or all."""
    sys.path.insert(0, str(DOCS.parent))
    blocks = snippets()
    wanted = argv or ["layers", *blocks]
    for name in wanted:
        if name == "layers":
            _save(draw_layers(), FIGURES / "layers.png")
        elif name in blocks:
            _save(run_snippet(blocks[name], name)["ax"].figure, FIGURES / f"{name}.png")
        else:
            raise SystemExit(
                f"unknown figure {name!r}: expected 'layers' or one of {list(blocks)}"
            )
        print(f"wrote {FIGURES / name}.png")


if __name__ == "__main__":
    main(sys.argv[1:])
