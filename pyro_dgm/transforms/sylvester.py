r"""Householder-Sylvester flows, amortized: a network maps a context to the parameters
of each step (van den Berg et al., 2018).

Pyro has no conditional Sylvester flow, and its unconditional ``Sylvester``
returns a log-determinant that is not that of its map: it computes ``x @ B`` and
``tanh(.) @ A``, the transposed map :math:`y = x + R^\top Q^\top \tanh(Q S^\top x + b)`,
for which the triangular formula it uses does not hold (it fails the shared
harness's autograd check). The layers here are written in the paper's orientation.

References:
    | Sylvester Normalizing Flows for Variational Inference (van den Berg et al., 2018)
    | https://arxiv.org/abs/1803.05649
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from pyro.distributions import ConditionalTransformModule, constraints
from pyro.nn import DenseNN
from torch import Tensor, nn
from torch.distributions import Transform

from ..utils.checks import check_int

__all__ = ["ConditionalSylvester", "ConditionedSylvester", "conditional_sylvester"]

_DIAG_BOUND = 0.999  # |R_ii|, |S_ii| < 0.999 keeps 1 + h' R_ii S_ii > 0 in float32 too


def _reflect(v: Tensor, u: Tensor, order: Sequence[int]) -> Tensor:
    """Apply the Householder reflections :math:`H_i = I - 2 u_i u_i^T` in ``order``."""
    for i in order:
        ui = u[..., i, :]
        v = v - 2.0 * (ui * v).sum(-1, keepdim=True) * ui
    return v


def _matvec(m: Tensor, v: Tensor) -> Tensor:
    return (m @ v.unsqueeze(-1)).squeeze(-1)


class ConditionedSylvester(Transform):
    r"""A Householder-Sylvester flow step with given (per-data-point) parameters.

    .. math:: y = x + Q R \tanh(S Q^\top x + b), \qquad
        \log|\det J| = \sum_{i=1}^D \log\big(1 + \tanh'(\cdot)_i\, R_{ii} S_{ii}\big),

    with :math:`R, S` upper triangular and :math:`Q = H_1 \cdots H_M` a product of
    Householder reflections. Sylvester's determinant identity,
    :math:`\det(I + Q R\, D S Q^\top) = \det(I + D S R)`, makes the Jacobian's
    determinant that of a triangular matrix. With :math:`|R_{ii}|, |S_{ii}| < 1`
    every :math:`1 + \tanh' R_{ii} S_{ii}` is positive: the map is invertible
    (van den Berg et al., 2018, theorem 2), but not in closed form. ``_inverse``
    raises; samples are scored through the cache. The forward pass costs
    :math:`O(MD + D^2)` per point.

    References:
        | Sylvester Normalizing Flows for Variational Inference (van den Berg et al., 2018)
        | https://arxiv.org/abs/1803.05649

    Arguments:
        params: A callable returning ``(R, S, b, u)`` of shapes ``(..., D, D)``,
            ``(..., D, D)``, ``(..., D)`` and ``(..., M, D)`` (unit vectors).

    Example:
        >>> r = s = torch.diag(torch.full((2,), 0.5))  # upper triangular, |diagonal| < 1
        >>> b, u = torch.zeros(2), torch.tensor([[1.0, 0.0]])  # Q = I - 2 u u^T
        >>> t = ConditionedSylvester(lambda: (r, s, b, u))
        >>> x = torch.zeros(1, 2)
        >>> t(x)  # tanh(0) = 0: the origin stays
        tensor([[0., 0.]])
        >>> t.log_abs_det_jacobian(x, t(x))  # 2 log(1 + 0.25)
        tensor([0.4463])
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, params: Callable[[], tuple[Tensor, Tensor, Tensor, Tensor]]) -> None:
        super().__init__(cache_size=1)
        self._params = params
        self._cached_log_det: Tensor | None = None

    def _call(self, x: Tensor) -> Tensor:
        r, s, b, u = self._params()
        order = range(u.shape[-2])
        pre = _matvec(s, _reflect(x, u, order)) + b  # S Q^T x + b, Q^T = H_M ... H_1
        act = torch.tanh(pre)
        y = x + _reflect(_matvec(r, act), u, reversed(order))  # Q v = H_1 ... H_M v
        diag = r.diagonal(dim1=-2, dim2=-1) * s.diagonal(dim1=-2, dim2=-1)
        self._cached_log_det = torch.log1p((1.0 - act.pow(2)) * diag).sum(-1)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        raise NotImplementedError(
            "the Sylvester flow has no closed-form inverse: score only the samples it drew "
            "(through the cache)"
        )

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        x_old, y_old = self._cached_x_y
        if x is not x_old or y is not y_old or self._cached_log_det is None:
            self(x)  # recomputes the log-determinant at x (and caches it)
        return self._cached_log_det


class ConditionalSylvester(ConditionalTransformModule):
    r"""An amortized Householder-Sylvester flow step: a network maps the context
    :math:`h` to the step's parameters (van den Berg et al., 2018).

    .. math:: y = x + Q(h) R(h) \tanh\big(S(h) Q(h)^\top x + b(h)\big)

    The hypernet returns the strictly upper triangles of :math:`R, S` (as full
    :math:`D \times D` outputs, masked), their diagonals (through
    :math:`0.999 \tanh`, so that the step is invertible), :math:`b`, and the
    :math:`M` Householder vectors of :math:`Q`. ``condition(h)`` returns a
    :class:`ConditionedSylvester`; it has no closed-form inverse, so a
    distribution built from it scores only its own samples (through the cache).
    Sampling costs one hypernet pass and :math:`O(MD + D^2)` per point.

    References:
        | Sylvester Normalizing Flows for Variational Inference (van den Berg et al., 2018)
        | https://arxiv.org/abs/1803.05649

    Arguments:
        input_dim: The dimension :math:`D`.
        nn: A network from the context to six tensors of sizes
            :math:`D^2, D^2, D, D, D, MD` (``DenseNN`` with those ``param_dims``).
        count_householder: :math:`M`, the reflections in :math:`Q`.

    Example:
        >>> t = conditional_sylvester(3, context_dim=2, hidden_dims=[8])
        >>> t.condition(torch.randn(5, 2))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim: int, nn: nn.Module, count_householder: int = 1) -> None:
        super().__init__()
        self.input_dim = check_int(input_dim, "input_dim", 1)
        self.count_householder = check_int(count_householder, "count_householder", 1)
        self.nn = nn
        self.register_buffer("mask", torch.triu(torch.ones(input_dim, input_dim), diagonal=1))

    def _params(self, context: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        d, m = self.input_dim, self.count_householder
        r_full, s_full, r_diag, s_diag, b, u = self.nn(context)
        r = r_full.unflatten(-1, (d, d)) * self.mask
        s = s_full.unflatten(-1, (d, d)) * self.mask
        r = r + torch.diag_embed(_DIAG_BOUND * torch.tanh(r_diag))
        s = s + torch.diag_embed(_DIAG_BOUND * torch.tanh(s_diag))
        u = u.unflatten(-1, (m, d))
        return r, s, b, u / torch.linalg.vector_norm(u, dim=-1, keepdim=True)

    def condition(self, context: Tensor) -> ConditionedSylvester:
        return ConditionedSylvester(partial(self._params, context))


def conditional_sylvester(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    count_householder: int | None = None,
) -> ConditionalSylvester:
    """Build a :class:`ConditionalSylvester` on a ``DenseNN`` hypernet.

    Defaults: ``hidden_dims = [10 * input_dim] * 2`` (as Pyro's conditional
    helpers) and ``count_householder = input_dim // 2 + 1`` (as Pyro's ``sylvester``).

    Arguments:
        input_dim: The dimension :math:`D`.
        context_dim: The size of the context :math:`h`.
        hidden_dims: Hidden sizes of the hypernet.
        count_householder: :math:`M`, the reflections in :math:`Q`.

    Example:
        >>> conditional_sylvester(4, context_dim=3).count_householder
        3
    """
    d = check_int(input_dim, "input_dim", 1)
    m = count_householder if count_householder is not None else d // 2 + 1
    hidden = list(hidden_dims) if hidden_dims is not None else [10 * d] * 2
    net = DenseNN(context_dim, hidden, param_dims=[d * d, d * d, d, d, d, m * d])
    return ConditionalSylvester(d, net, m)
