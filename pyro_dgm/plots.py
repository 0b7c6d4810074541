r"""Matplotlib figures for densities, samples, latents, training curves and diagnostics.

Every function takes ``ax=None`` (a new pyplot figure is made when none is given),
accepts tensors or arrays, returns the Axes, and never calls ``plt.show()``.

The ``*_figure`` functions draw the same pictures into a whole
:class:`matplotlib.figure.Figure` made without pyplot (no global figure list, no
backend to choose: ``fig.savefig`` renders with Agg), for scripts and the command
line, which save them and let them go.

What they draw: a density :math:`p(x) = e^{\log p(x)}` on a grid (:func:`density_2d`),
each point's PSIS :math:`\hat k` against the bands of Yao et al. (:func:`pareto_k_plot`:
:math:`\hat k \le 0.5` good, :math:`\le 0.7` usable, above not to be trusted), and the
ELBO surgery terms :math:`\mathbb I_q[x, z]` and
:math:`\mathrm{KL}(q_\text{agg} \,\|\, p)` (:func:`elbo_surgery_bars`), in nats per
data point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "class_image_samples_figure",
    "class_points_figure",
    "class_sequence_samples_figure",
    "density_2d",
    "density_samples_figure",
    "elbo_surgery_bars",
    "elbo_surgery_figure",
    "image_grid",
    "image_samples_figure",
    "latent_scatter",
    "latent_scatter_figure",
    "pareto_k_figure",
    "pareto_k_plot",
    "sequence_samples_figure",
    "training_curve",
    "training_curve_figure",
]


def _axes(ax: Axes | None, figsize: tuple[float, float] = (5.0, 4.0)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _numpy(x: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def density_2d(
    log_prob: Callable[[Tensor], Tensor],
    *,
    samples: Tensor | np.ndarray | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    resolution: int = 200,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Draw the density ``exp(log_prob(x))`` of a 2-D distribution as an image,
    with ``samples`` (e.g. held-out data) scattered on top.

    Arguments:
        log_prob: Maps points of shape ``(N, 2)`` to log-densities ``(N,)``.
        samples: Points to overlay.
        bounds: ``(xmin, xmax, ymin, ymax)``; by default the samples' range
            with a margin, or ``[-4, 4]^2``.
        resolution: Grid points per axis.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = density_2d(lambda x: -0.5 * x.pow(2).sum(-1), bounds=(-3, 3, -3, 3), resolution=50,
        ...                 ax=Figure().subplots(), title="N(0, I), unnormalized")
        >>> ax.get_title()
        'N(0, I), unnormalized'
    """
    ax = _axes(ax)
    points = None if samples is None else _numpy(samples)
    if bounds is None:
        if points is not None and len(points):
            lo, hi = points.min(0), points.max(0)
            pad = 0.15 * (hi - lo) + 1e-3
            bounds = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
        else:
            bounds = (-4.0, 4.0, -4.0, 4.0)
    xs = torch.linspace(bounds[0], bounds[1], resolution)
    ys = torch.linspace(bounds[2], bounds[3], resolution)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = torch.cat([log_prob(chunk).exp() for chunk in grid.split(10_000)])
    image = density.reshape(resolution, resolution).cpu().numpy()
    ax.imshow(image, origin="lower", extent=bounds, aspect="auto", cmap="viridis")
    if points is not None:
        ax.scatter(points[:, 0], points[:, 1], s=1.5, c="white", alpha=0.4, linewidths=0)
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    if title:
        ax.set_title(title)
    return ax


def training_curve(history: Any, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Training and validation loss per epoch from :func:`~pyro_dgm.infer.fit`'s history
    (a :class:`~pyro_dgm.infer.History` or its ``to_dict()``).

    Example:
        >>> from matplotlib.figure import Figure
        >>> history = {"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5],
        ...            "validation_loss": [3.1, 2.2, 1.9]}
        >>> [line.get_label() for line in training_curve(history, ax=Figure().subplots()).lines]
        ['train', 'validation']
    """
    ax = _axes(ax)
    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    ax.plot(h["epoch"], h["train_loss"], label="train")
    valid = np.asarray(h["validation_loss"], dtype=float)
    if np.isfinite(valid).any():
        ax.plot(h["epoch"], valid, label="validation")
        if h.get("best_epoch"):
            ax.axvline(h["best_epoch"], color="gray", ls=":", lw=1, label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per data point (nats)")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def image_grid(
    images: Tensor | np.ndarray,
    *,
    num_levels: int | None = None,
    ncols: int | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Tile images ``(N, C, H, W)`` (C = 1 or 3) into one picture.

    Arguments:
        images: Integer images in ``{0, ..., num_levels - 1}``, or floats in [0, 1].
        num_levels: The number of levels of integer images (sets the colour scale).
        ncols: Images per row (default: about the square root of N).

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = image_grid(torch.randint(0, 17, (6, 1, 8, 8)), num_levels=17, ncols=3,
        ...                 ax=Figure().subplots())
        >>> ax.images[0].get_array().shape  # 2 rows x 3 columns of 8x8 images, 1-pixel borders
        (19, 28)
    """
    x = _numpy(images).astype(float)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {x.shape}")
    if num_levels is not None:
        x = x / (num_levels - 1)
    n, c, h, w = x.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = np.ones((nrows * (h + 1) + 1, ncols * (w + 1) + 1, c))
    for i in range(n):
        r, q = divmod(i, ncols)
        top, left = 1 + r * (h + 1), 1 + q * (w + 1)
        canvas[top : top + h, left : left + w] = x[i].transpose(1, 2, 0)
    ax = _axes(ax, figsize=(ncols * 0.6 + 1, nrows * 0.6 + 1))
    ax.imshow(
        canvas.squeeze(-1) if c == 1 else canvas,
        cmap="gray_r" if c == 1 else None,
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def latent_scatter(
    latents: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | Sequence[int] | None = None,
    *,
    dims: tuple[int, int] = (0, 1),
    ax: Axes | None = None,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Scatter two coordinates of latent codes ``(N, D)``, coloured by class label
    (one colour and legend entry per label; one colour without labels).

    Arguments:
        latents: Latent codes (e.g. posterior means), ``(N, D)`` with ``D >= 2``
            (project them first, e.g. by PCA, to show other directions).
        labels: Integer or string class labels ``(N,)``.
        dims: The two coordinates to show.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = latent_scatter(torch.randn(30, 4), labels=torch.arange(30) % 3, dims=(1, 2),
        ...                     ax=Figure().subplots())
        >>> len(ax.collections)  # one colour per label
        3
    """
    z = _numpy(latents).astype(float)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"latents must have shape (N, D) with D >= 2, got {z.shape}")
    if not all(0 <= d < z.shape[1] for d in dims) or len(dims) != 2:
        raise ValueError(f"dims must be two coordinates in [0, {z.shape[1]}), got {dims}")
    ax = _axes(ax, figsize=(5.0, 4.5))
    kwargs = {"s": 6, "alpha": 0.7, "linewidths": 0} | scatter_kwargs
    if labels is None:
        ax.scatter(z[:, dims[0]], z[:, dims[1]], **kwargs)
    else:
        y = _numpy(labels)
        if y.shape != (len(z),):
            raise ValueError(f"labels must have shape ({len(z)},), got {y.shape}")
        classes = np.unique(y)
        colours = _colours(len(classes))
        for colour, c in zip(colours, classes, strict=True):
            keep = y == c
            ax.scatter(z[keep, dims[0]], z[keep, dims[1]], color=colour, label=str(c), **kwargs)
        ax.legend(markerscale=2, fontsize="small", title="label", loc="best")
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    if title:
        ax.set_title(title)
    return ax


def _colours(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def pareto_k_plot(
    k: Tensor | np.ndarray | Sequence[float],
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """The PSIS k-hat of each data point's importance weights against its index, with
    dashed lines at 0.5 (good below) and 0.7 (not to be trusted above), points
    coloured by band (Yao et al., 2018). Infinite values are drawn at the axis edge
    with a triangle marker; ``nan`` (too few draws) is left out.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = pareto_k_plot(torch.tensor([0.1, 0.4, 0.8, 1.2]), ax=Figure().subplots())
        >>> ax.get_ylabel()
        'PSIS k-hat'
    """
    values = _numpy(k).astype(float)
    if values.ndim != 1:
        raise ValueError(f"k must be 1-D (one value per data point), got shape {values.shape}")
    ax = _axes(ax, figsize=(6.0, 3.5))
    index = np.arange(len(values))
    finite = np.isfinite(values)
    bands = [
        (finite & (values <= 0.5), "tab:blue", "k <= 0.5"),
        (finite & (values > 0.5) & (values <= 0.7), "tab:orange", "0.5 < k <= 0.7"),
        (finite & (values > 0.7), "tab:red", "k > 0.7"),
    ]
    for keep, colour, label in bands:
        ax.scatter(index[keep], values[keep], s=10, color=colour, label=f"{label} ({keep.sum()})")
    for level in (0.5, 0.7):
        ax.axhline(level, color="gray", ls="--", lw=1)
    lo, hi = ax.get_ylim()
    top, bottom = np.isposinf(values), np.isneginf(values)
    if top.any():
        ax.scatter(
            index[top],
            np.full(top.sum(), hi),
            marker="^",
            color="tab:red",
            label=f"k = inf ({top.sum()})",
            clip_on=False,
        )
    if bottom.any():
        ax.scatter(
            index[bottom],
            np.full(bottom.sum(), lo),
            marker="v",
            color="tab:blue",
            label=f"k = -inf ({bottom.sum()})",
            clip_on=False,
        )
    ax.set_xlabel("data point")
    ax.set_ylabel("PSIS k-hat")
    ax.legend(fontsize="small", loc="best")
    if title:
        ax.set_title(title)
    return ax


_TERM_LABELS = {
    "elbo": "ELBO",
    "kl": "average KL",
    "mutual_information": "mutual information",
    "marginal_kl": "marginal KL",
}


#: The former name of :func:`pareto_k_plot`, kept for one release (it shared its name
#: with :func:`pyro_dgm.infer.pareto_k`, which computes the values).
pareto_k = pareto_k_plot


def elbo_surgery_bars(
    results: Mapping[str, Any],
    *,
    terms: Sequence[str] = ("mutual_information", "marginal_kl"),
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Grouped bars of ELBO-surgery terms (nats per data point), one group per model,
    with standard errors as error bars when known.

    Arguments:
        results: Model name to :class:`~pyro_dgm.diagnostics.ELBOSurgery` (or its
            ``to_dict()``).
        terms: Which terms to draw: any of ``"elbo"``, ``"reconstruction"``, ``"kl"``,
            ``"mutual_information"``, ``"marginal_kl"`` (the default two are on the
            scale of the prior's mismatch; the reconstruction is usually far larger).

    Example:
        >>> from matplotlib.figure import Figure
        >>> results = {"normal prior": {"mutual_information": 3.1, "marginal_kl": 1.2},
        ...            "flow prior": {"mutual_information": 3.4, "marginal_kl": 0.3}}
        >>> ax = elbo_surgery_bars(results, ax=Figure().subplots())
        >>> [t.get_text() for t in ax.get_xticklabels()]
        ['normal prior', 'flow prior']
    """
    if not results:
        raise ValueError("results must name at least one model")
    rows = {name: r.to_dict() if hasattr(r, "to_dict") else dict(r) for name, r in results.items()}
    for name, row in rows.items():
        missing = [t for t in terms if t not in row]
        if missing:
            raise ValueError(f"results[{name!r}] lacks the terms {missing}")
    ax = _axes(ax, figsize=(1.5 + 1.2 * len(rows) * len(terms) / 2, 4.0))
    x = np.arange(len(rows))
    width = 0.8 / len(terms)
    for j, term in enumerate(terms):
        heights = [float(row[term]) for row in rows.values()]
        errors = [float(row.get("stderr", {}).get(term, np.nan)) for row in rows.values()]
        yerr = None if np.isnan(errors).all() else np.nan_to_num(errors)
        ax.bar(
            x + (j - (len(terms) - 1) / 2) * width,
            heights,
            width,
            yerr=yerr,
            capsize=3,
            label=_TERM_LABELS.get(term, term.replace("_", " ")),
        )
    ax.set_xticks(x, list(rows), rotation=20 if len(rows) > 3 else 0)
    ax.set_ylabel("nats per data point")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


# -- whole figures, made without pyplot ---------------------------------------------------


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _finish(fig: Figure, title: str | None) -> Figure:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curve_figure(history: Any, *, title: str | None = None) -> Figure:
    """:func:`training_curve` as a whole figure (made without pyplot).

    Example:
        >>> import io
        >>> history = {"epoch": [1, 2], "train_loss": [2.0, 1.0], "validation_loss": [2.1, 1.2]}
        >>> training_curve_figure(history, title="fit").savefig(io.BytesIO(), format="png")
    """
    fig = _figure((5.0, 4.0))
    training_curve(history, ax=fig.subplots(), title=title)
    return _finish(fig, None)


def image_samples_figure(
    data: Tensor | np.ndarray,
    samples: Tensor | np.ndarray,
    *,
    num_levels: int | None = None,
    labels: tuple[str, str] = ("test data", "samples"),
    title: str | None = None,
) -> Figure:
    """Two :func:`image_grid` panels side by side, data and model samples (made
    without pyplot).

    Example:
        >>> images = torch.randint(0, 17, (4, 1, 8, 8))
        >>> len(image_samples_figure(images, images, num_levels=17).axes)
        2
    """
    fig = _figure((8.0, 4.5))
    left, right = fig.subplots(1, 2)
    image_grid(data, num_levels=num_levels, ax=left, title=labels[0])
    image_grid(samples, num_levels=num_levels, ax=right, title=labels[1])
    return _finish(fig, title)


def sequence_samples_figure(
    data: Tensor | np.ndarray,
    samples: Tensor | np.ndarray,
    *,
    labels: tuple[str, str] = ("test data", "samples"),
    title: str | None = None,
) -> Figure:
    """Integer sequences ``(N, C, T)`` (their first channel) above model samples of the
    same shape, one line per sequence (made without pyplot).

    Example:
        >>> waves = torch.randint(0, 8, (3, 1, 20))
        >>> len(sequence_samples_figure(waves, waves).axes)
        2
    """
    rows = [(_numpy(data).astype(float), labels[0]), (_numpy(samples).astype(float), labels[1])]
    for values, label in rows:
        if values.ndim != 3:
            raise ValueError(f"{label}: expected sequences of shape (N, C, T), got {values.shape}")
    fig = _figure((8.0, 5.0))
    axes = fig.subplots(2, 1, sharex=True, sharey=True)
    for ax, (values, label) in zip(axes, rows, strict=True):
        ax.plot(values[:, 0].T, lw=1)
        ax.set_ylabel("level")
        ax.set_title(label)
    axes[-1].set_xlabel("position")
    return _finish(fig, title)


def density_samples_figure(
    data: Tensor | np.ndarray,
    samples: Tensor | np.ndarray,
    *,
    log_prob: Callable[[Tensor], Tensor] | None = None,
    title: str | None = None,
) -> Figure:
    """2-D data and model samples scattered together, beside the model density
    (:func:`density_2d` with the data on top) when ``log_prob`` is given (made
    without pyplot).

    Example:
        >>> fig = density_samples_figure(torch.randn(50, 2), torch.randn(50, 2),
        ...                              log_prob=lambda x: -0.5 * x.pow(2).sum(-1))
        >>> len(fig.axes)  # the density beside the scatter
        2
    """
    points, drawn = _numpy(data), _numpy(samples).reshape(-1, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"data: expected points of shape (N, 2), got {points.shape}")
    fig = _figure((10.0 if log_prob is not None else 5.0, 4.5))
    axes = list(np.atleast_1d(fig.subplots(1, 2 if log_prob is not None else 1)))
    if log_prob is not None:
        density_2d(log_prob, samples=points, ax=axes[0], title="model density, test points")
    ax = axes[-1]
    ax.scatter(*points.T, s=2, alpha=0.4, label="test data")
    ax.scatter(*drawn.T, s=2, alpha=0.4, label="model samples")
    if log_prob is not None:
        ax.set_xlim(axes[0].get_xlim())
        ax.set_ylim(axes[0].get_ylim())
    ax.legend(markerscale=5)
    ax.set_title("samples")
    return _finish(fig, title)


def pareto_k_figure(
    k: Tensor | np.ndarray | Sequence[float], *, title: str | None = None
) -> Figure:
    """:func:`pareto_k` as a whole figure (made without pyplot).

    Example:
        >>> pareto_k_figure(torch.rand(20), title="test points").axes[0].get_title()
        'test points'
    """
    fig = _figure((6.0, 3.5))
    pareto_k_plot(k, ax=fig.subplots(), title=title)
    return _finish(fig, None)


def elbo_surgery_figure(
    results: Mapping[str, Any],
    *,
    terms: Sequence[str] = ("mutual_information", "marginal_kl"),
    title: str | None = None,
) -> Figure:
    """:func:`elbo_surgery_bars` as a whole figure (made without pyplot).

    Example:
        >>> fig = elbo_surgery_figure({"vae": {"mutual_information": 3.0, "marginal_kl": 0.5}})
        >>> len(fig.axes)
        1
    """
    fig = _figure((4.5, 4.0))
    elbo_surgery_bars(results, terms=terms, ax=fig.subplots(), title=title)
    return _finish(fig, None)


def latent_scatter_figure(
    latents: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | Sequence[int] | None = None,
    *,
    axis_labels: tuple[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """:func:`latent_scatter` of the first two coordinates as a whole figure, with
    ``axis_labels`` (e.g. principal components) if given (made without pyplot).

    Example:
        >>> fig = latent_scatter_figure(torch.randn(40, 2), axis_labels=("PC 1", "PC 2"))
        >>> fig.axes[0].get_xlabel()
        'PC 1'
    """
    fig = _figure((5.0, 4.5))
    ax = latent_scatter(latents, labels, ax=fig.subplots(), title=title)
    if axis_labels is not None:
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
    return _finish(fig, None)


# -- per class: the report of a class-conditional model ----------------------------------


def _per_class(values: Tensor | np.ndarray, name: str, ndim: int) -> np.ndarray:
    x = _numpy(values).astype(float)
    if x.ndim != ndim:
        raise ValueError(
            f"{name}: expected one row per class, shape (K, n, ...) with {ndim} dimensions, "
            f"got {x.shape}"
        )
    return x


def class_image_samples_figure(
    data: Tensor | np.ndarray,
    samples: Tensor | np.ndarray,
    *,
    num_levels: int | None = None,
    classes: Sequence[str] | None = None,
    labels: tuple[str, str] = ("test data", "samples"),
    title: str | None = None,
) -> Figure:
    """Data and a class-conditional model's samples side by side, one row per class
    (made without pyplot).

    Arguments:
        data: Images of each class, ``(K, n, C, H, W)`` (e.g. test images per label).
        samples: Samples given each class, ``(K, m, C, H, W)``.
        num_levels: The number of levels of integer images.
        classes: The names of the K classes (default ``0 ... K-1``), written left of
            each row.

    Example:
        >>> per_class = torch.randint(0, 17, (3, 4, 1, 8, 8))  # 3 classes, 4 images each
        >>> fig = class_image_samples_figure(per_class, per_class, num_levels=17,
        ...                                  classes=["zero", "one", "two"])
        >>> len(fig.axes)
        2
    """
    x, y = _per_class(data, "data", 5), _per_class(samples, "samples", 5)
    if len(x) != len(y):
        raise ValueError(f"samples: expected {len(x)} classes (those of data), got {len(y)}")
    names = [str(k) for k in range(len(x))] if classes is None else list(classes)
    if len(names) != len(x):
        raise ValueError(f"classes: expected {len(x)} names, got {len(names)}")
    k, height = len(x), x.shape[3]
    width = 1.0 + 0.35 * (x.shape[1] + y.shape[1])
    fig = _figure((max(6.0, width), 1.0 + 0.4 * k))
    axes = fig.subplots(1, 2)
    for ax, values, label in ((axes[0], x, labels[0]), (axes[1], y, labels[1])):
        image_grid(
            values.reshape(-1, *values.shape[2:]),
            num_levels=num_levels,
            ncols=values.shape[1],
            ax=ax,
            title=label,
        )
        for row, name in enumerate(names):  # at the middle of each row of the grid
            ax.text(-1, 1 + row * (height + 1) + height / 2, name, ha="right", va="center")
    return _finish(fig, title)


def class_points_figure(
    data: Tensor | np.ndarray,
    data_labels: Tensor | np.ndarray | Sequence[int],
    samples: Tensor | np.ndarray,
    sample_labels: Tensor | np.ndarray | Sequence[int],
    *,
    title: str | None = None,
) -> Figure:
    """2-D data and a class-conditional model's samples, coloured by class, side by
    side on the same axes' limits (made without pyplot).

    Example:
        >>> labels = torch.arange(60) % 3
        >>> fig = class_points_figure(torch.randn(60, 2), labels, torch.randn(60, 2), labels)
        >>> [ax.get_title() for ax in fig.axes]
        ['test data by class', 'samples given each class']
    """
    fig = _figure((10.0, 4.5))
    left, right = fig.subplots(1, 2, sharex=True, sharey=True)
    latent_scatter(data, data_labels, ax=left, title="test data by class")
    latent_scatter(samples, sample_labels, ax=right, title="samples given each class")
    for ax in (left, right):
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
    return _finish(fig, title)


def class_sequence_samples_figure(
    data: Tensor | np.ndarray,
    samples: Tensor | np.ndarray,
    *,
    classes: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Integer sequences of each class (grey) and a class-conditional model's samples
    given it (coloured), one panel per class: ``(K, n, C, T)`` each, their first
    channel (made without pyplot).

    Example:
        >>> per_class = torch.randint(0, 8, (2, 3, 1, 16))  # 2 classes, 3 sequences each
        >>> len(class_sequence_samples_figure(per_class, per_class).axes)  # one panel per class
        2
    """
    x, y = _per_class(data, "data", 4), _per_class(samples, "samples", 4)
    if len(x) != len(y):
        raise ValueError(f"samples: expected {len(x)} classes (those of data), got {len(y)}")
    names = [str(k) for k in range(len(x))] if classes is None else list(classes)
    fig = _figure((8.0, 0.9 * len(x) + 1.0))
    axes = np.atleast_1d(fig.subplots(len(x), 1, sharex=True, sharey=True))
    for ax, data_k, samples_k, name in zip(axes, x, y, names, strict=True):
        ax.plot(data_k[:, 0].T, lw=1, color="0.6")
        ax.plot(samples_k[:, 0].T, lw=1)
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[0].set_title("test data (grey) and samples given each class")
    axes[-1].set_xlabel("position")
    return _finish(fig, title)
