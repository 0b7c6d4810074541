r"""Deterministic quantization of probabilities to the integer frequencies the coders use.

An entropy coder needs the same integer model on both sides, bit for bit. Every
conditional's log-masses :math:`\ell_v` (:math:`v = 0, \dots, L-1`) become counts

.. math:: c_v = 1 + f_v, \qquad f_v = \Big\lfloor \frac{e^{\ell_v - m}}
    {\sum_u e^{\ell_u - m}} (2^{24} - L) \Big\rfloor \ (+\ \text{the remainder on the
    most probable level}), \qquad \sum_v c_v = 2^{24},

with :math:`m = \max_v \ell_v`: every level gets at least one count, so any value can be
coded (at most 24 bits), and a value costs :math:`-\log_2(c_v / 2^{24})` bits. The
arithmetic is float64 on the CPU, elementwise and in a fixed order, so equal log-masses
give equal counts. 24 bits is the precision of constriction's default coders; the
counts are handed to them as the weights :math:`f_v` (constriction adds the one count
per level itself), which they reproduce exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["PRECISION", "code_length_bits", "free_weights", "quantize_log_probs"]

#: Bits of the fixed-point probabilities: the counts of a conditional sum to 2**PRECISION.
PRECISION = 24


def _quantized_free(log_probs: Tensor) -> Tensor:
    lp = torch.as_tensor(log_probs).detach().to(device="cpu", dtype=torch.float64)
    if lp.dim() != 2 or lp.shape[1] < 2:
        raise ValueError(
            f"log_probs: expected shape (n, L) with L >= 2 levels, got {tuple(lp.shape)}"
        )
    if lp.shape[1] >= 2**PRECISION // 2:
        raise ValueError(f"log_probs: expected fewer than 2**23 levels, got {lp.shape[1]}")
    if bool(torch.isnan(lp).any()) or bool((lp == float("inf")).any()):
        raise ValueError("log_probs: expected log-probabilities, got NaN or +inf values")
    top = lp.max(-1, keepdim=True).values
    if not bool(torch.isfinite(top).all()):
        raise ValueError("log_probs: a row gives every level probability zero (all -inf)")
    p = torch.exp(lp - top)
    free = float(2**PRECISION - lp.shape[1])
    f = torch.floor(p * (free / p.sum(-1, keepdim=True)))
    rows = torch.arange(len(f))
    f[rows, p.argmax(-1)] += free - f.sum(-1)  # the rounding remainder: at most L counts
    return f


def quantize_log_probs(log_probs: Tensor) -> Tensor:
    r"""Integer counts :math:`c_v \ge 1` summing to :math:`2^{24}` per row (see the module).

    Arguments:
        log_probs: ``(n, L)`` log-probabilities (normalized or not) of the :math:`L`
            levels of :math:`n` conditionals; ``-inf`` for impossible levels.

    Returns:
        ``(n, L)`` ``int64`` counts.

    Example:
        >>> c = quantize_log_probs(torch.tensor([[0.0, -1e9, -0.5]]))
        >>> c.sum().item() == 2**24, c.min().item()
        (True, 1)
    """
    return _quantized_free(log_probs).long() + 1


def free_weights(log_probs: Tensor) -> np.ndarray:
    """The counts less one, ``(n, L)`` float64: what constriction's ``Categorical`` takes.

    The array is C-contiguous: constriction reads the rows from the buffer as laid out.

    Arguments:
        log_probs: ``(n, L)`` log-probabilities of the :math:`L` levels.

    Example:
        >>> f = free_weights(torch.zeros(2, 4))  # two uniform conditionals over 4 levels
        >>> f.shape, f.sum(-1)  # 2**24 - L: constriction adds the count of one per level
        ((2, 4), array([16777212., 16777212.]))
    """
    return np.ascontiguousarray(_quantized_free(log_probs).numpy())


def code_length_bits(log_probs: Tensor, values: Tensor) -> Tensor:
    r"""Bits the quantized conditionals charge for ``values``: :math:`-\log_2(c_v/2^{24})`.

    Arguments:
        log_probs: ``(n, L)``.
        values: ``(n,)`` levels.

    Returns:
        ``(n,)`` float64 bits.

    Example:
        >>> code_length_bits(torch.zeros(2, 4), torch.tensor([0, 3]))  # uniform over 4
        tensor([2., 2.], dtype=torch.float64)
    """
    counts = quantize_log_probs(log_probs)
    picked = counts.gather(1, torch.as_tensor(values).long().reshape(-1, 1)).squeeze(1)
    return PRECISION - torch.log2(picked.double())
