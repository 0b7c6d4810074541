r"""Per-data-point PSIS :math:`\hat k` of importance weights, summarized in Yao et al.'s bands."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..infer.metrics import pareto_k

__all__ = ["BANDS", "pareto_k", "summarize_pareto_k"]

#: Yao et al. (2018): below 0.5 good, 0.5-0.7 usable, above 0.7 not to be trusted.
BANDS = (
    ("good", -math.inf, 0.5),
    ("ok", 0.5, 0.7),
    ("bad", 0.7, 1.0),
    ("very bad", 1.0, math.inf),
)


def summarize_pareto_k(k: Tensor) -> dict[str, object]:
    r"""Counts of :math:`\hat k` in the bands (good :math:`\le 0.5` < ok :math:`\le 0.7`
    < bad :math:`\le 1` < very bad), the undefined ones (``nan``: too few draws),
    the median and maximum, and the indices of the points above 0.7.

    .. math:: \hat k_i > 0.7 \Rightarrow \text{the guide at } x_i \text{ is not to be trusted}

    References:
        | Yes, but Did It Work?: Evaluating Variational Inference (Yao et al., 2018)
        | https://arxiv.org/abs/1802.02538

    Example:
        >>> summary = summarize_pareto_k(torch.tensor([0.2, 0.6, 0.9, 1.3, float("nan")]))
        >>> summary["counts"], summary["undefined"], summary["heavy_tailed"]
        ({'good': 1, 'ok': 1, 'bad': 1, 'very bad': 1}, 1, [2, 3])
    """
    if not isinstance(k, Tensor) or k.dim() != 1:
        raise ValueError(f"k must be a 1-D tensor of k-hat values, got {getattr(k, 'shape', k)}")
    k = k.double()
    defined = k[~torch.isnan(k)]
    counts = {
        name: int(((defined > lo) & (defined <= hi)).sum())
        + (name == "good") * int((defined == -math.inf).sum())
        for name, lo, hi in BANDS
    }
    finite = defined[torch.isfinite(defined)]
    return {
        "counts": counts,
        "undefined": int(torch.isnan(k).sum()),
        "num_points": len(k),
        "median": float(defined.median()) if len(defined) else math.nan,
        "max": float(defined.max()) if len(defined) else math.nan,
        "mean_finite": float(finite.mean()) if len(finite) else math.nan,
        "heavy_tailed": torch.nonzero(k > 0.7).flatten().tolist(),
    }
