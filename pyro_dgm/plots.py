r"""Matplotlib figures for densities, samples and training curves.

Every function takes ``ax=None`` (a new figure is made when none is given),
accepts tensors or arrays, returns the Axes, and never calls ``plt.show()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["density_2d", "image_grid", "training_curve"]


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
    (a :class:`~pyro_dgm.infer.History` or its ``to_dict()``)."""
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
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = (
            x[i].transpose(1, 2, 0)
        )
    ax = _axes(ax, figsize=(ncols * 0.6 + 1, nrows * 0.6 + 1))
    ax.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray_r" if c == 1 else None,
              vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
