r"""Invertible linear layers (Glow's learnable mixing of features) for vector events."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import TransformModule, constraints
from torch import Tensor

__all__ = ["InvertibleLinear", "invertible_linear"]

_PARAMETRIZATIONS = ("lu", "qr")


def _random_rotation(dim: int) -> Tensor:
    """A random orthogonal matrix, as Glow initialises its 1x1 convolutions."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim))
    return q


class InvertibleLinear(TransformModule):
    r"""A learnable invertible linear map of vector events (Glow's "invertible 1x1
    convolution" with the pixels taken away).

    .. math:: y = x W^\top + b, \qquad \log |\det J| = \log |\det W| .

    With ``parametrization="lu"``,

    .. math:: W = P L (U + \mathrm{diag}(s)), \quad s = \sigma \odot e^{\ell},
        \quad \log |\det W| = \textstyle\sum_i \ell_i ,

    where :math:`P` is a fixed permutation (buffer), :math:`L` is unit
    lower-triangular and :math:`U` strictly upper-triangular (learnable), and
    :math:`\sigma \in \{\pm 1\}^D` is a fixed sign buffer, so that :math:`W` is
    invertible by construction. With ``parametrization="qr"``,

    .. math:: W = Q R, \quad Q = H_1 \cdots H_D, \quad
        H_i = I - 2 \frac{v_i v_i^\top}{v_i^\top v_i}, \quad
        R = V + \mathrm{diag}(e^{r}), \quad \log |\det W| = \textstyle\sum_i r_i ,

    where :math:`v_i` is :math:`e_i` plus a learnable part below entry :math:`i`
    (LAPACK's compact Householder form, applied by
    ``torch.linalg.householder_product``), :math:`V` is strictly upper-triangular
    and :math:`r` a vector (learnable). A product of Householder reflections is
    orthogonal to rounding error in whatever dtype it is computed (so
    :math:`\log |\det Q| = 0` holds after ``.double()`` too), it is one library
    call, its :math:`D(D-1)/2` free entries match the dimension of the orthogonal
    group, and it starts from a random rotation as Glow's does: the Householder
    vectors of the QR decomposition of a Gaussian matrix (``torch.geqrf``). The
    sign of :math:`\det W` is :math:`(-1)^D` (:math:`D` reflections), fixed as
    :math:`\sigma` fixes it for LU. Both parametrizations start from a random
    rotation (:math:`|\det W| = 1`), as Glow does.

    Costs, per call: forming the factors is :math:`O(D^3)` (a matrix product for
    LU's :math:`W`, one Householder product for QR's :math:`Q`), independent of
    the batch; then each event costs :math:`O(D^2)` in both directions. The
    forward call (sampling) is one matrix product; the inverse (scoring) never
    forms :math:`W^{-1}`: two triangular solves (LU), or one product with
    :math:`Q` and one triangular solve (QR). The log-det is :math:`O(D)`.

    Pyro's ``GeneralizedChannelPermute`` is the image (``(C, H, W)``) version with
    :math:`W = PLU`, its diagonal stored directly (a diagonal entry that crosses
    zero makes :math:`W` singular). This class adds vector events, the
    sign-times-exponential diagonal, the QR parametrization, an optional bias, and
    exposes :attr:`weight`, :attr:`log_abs_det` and :meth:`solve` so that a 1x1
    convolution over channels can reuse it. There is no conditional twin: a
    context-dependent :math:`W` needs a network that outputs a whole invertible
    matrix, which this parametrization does not provide.

    Arguments:
        input_dim: The event size :math:`D`.
        parametrization: ``"lu"`` or ``"qr"``.
        bias: Whether to add a learnable bias :math:`b` (zero at initialisation).

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = InvertibleLinear(3, parametrization="qr")
        >>> x = torch.randn(5, 3)
        >>> torch.allclose(t._inverse(t(x)), x, atol=1e-5)
        True
        >>> torch.allclose(t.log_abs_det, torch.linalg.slogdet(t.weight).logabsdet, atol=1e-5)
        True
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim: int, parametrization: str = "lu", bias: bool = False) -> None:
        super().__init__(cache_size=1)
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"input_dim must be an integer >= 1, got {input_dim!r}")
        if parametrization not in _PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization must be one of {_PARAMETRIZATIONS}, got {parametrization!r}"
            )
        self.input_dim = input_dim
        self.parametrization = parametrization
        if parametrization == "lu":
            p, lower, upper = torch.linalg.lu(_random_rotation(input_dim))
            s = upper.diagonal()
            self.register_buffer("permutation", p)
            self.register_buffer("diag_sign", torch.sign(s))
            self.lower = torch.nn.Parameter(lower.tril(-1))
            self.upper = torch.nn.Parameter(upper.triu(1))
            self.log_abs_diag = torch.nn.Parameter(s.abs().log())
        else:
            reflectors, _ = torch.geqrf(torch.randn(input_dim, input_dim))
            self.reflectors = torch.nn.Parameter(reflectors.tril(-1))
            self.upper = torch.nn.Parameter(torch.zeros(input_dim, input_dim))
            self.log_diag = torch.nn.Parameter(torch.zeros(input_dim))
        bias_param = torch.nn.Parameter(torch.zeros(input_dim)) if bias else None
        self.register_parameter("bias", bias_param)

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, parametrization={self.parametrization!r}, "
            f"bias={self.bias is not None}"
        )

    # -- the factors ---------------------------------------------------------

    def _eye(self) -> Tensor:
        p = self.upper
        return torch.eye(self.input_dim, dtype=p.dtype, device=p.device)

    def _lu_factors(self) -> tuple[Tensor, Tensor]:
        """(L, U + diag(s)) of the LU parametrization."""
        lower = self.lower.tril(-1) + self._eye()
        diag = self.diag_sign * torch.exp(self.log_abs_diag)
        return lower, self.upper.triu(1) + torch.diag_embed(diag)

    def _qr_factors(self) -> tuple[Tensor, Tensor]:
        """(Q, R) of the QR parametrization."""
        v = self.reflectors.tril(-1) + self._eye()
        q = torch.linalg.householder_product(v, 2.0 / v.pow(2).sum(0))
        return q, self.upper.triu(1) + torch.diag_embed(torch.exp(self.log_diag))

    @property
    def weight(self) -> Tensor:
        r"""The matrix :math:`W` of shape ``(D, D)`` (with :math:`y = x W^\top + b`)."""
        if self.parametrization == "lu":
            lower, upper = self._lu_factors()
            return self.permutation @ lower @ upper
        q, r = self._qr_factors()
        return q @ r

    @property
    def log_abs_det(self) -> Tensor:
        r""":math:`\log |\det W|`, a scalar, in :math:`O(D)`."""
        return (self.log_abs_diag if self.parametrization == "lu" else self.log_diag).sum()

    def solve(self, y: Tensor) -> Tensor:
        r"""The :math:`x` with :math:`x W^\top = y`, for rows ``y`` of shape
        ``(..., D)``, by triangular solves (no dense inverse; the bias is not
        subtracted)."""
        shape = y.shape
        rows = y.reshape(-1, self.input_dim)
        if self.parametrization == "lu":
            # x U'^T L^T P^T = y  <=>  x U'^T L^T = y P
            lower, upper = self._lu_factors()
            rows = torch.linalg.solve_triangular(
                lower.mT, rows @ self.permutation, upper=True, left=False, unitriangular=True
            )
            rows = torch.linalg.solve_triangular(upper.mT, rows, upper=False, left=False)
        else:
            # x R^T Q^T = y  <=>  x R^T = y Q
            q, r = self._qr_factors()
            rows = torch.linalg.solve_triangular(r.mT, rows @ q, upper=False, left=False)
        return rows.reshape(shape)

    # -- the transform -------------------------------------------------------

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() < 1 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name} must have last dimension input_dim={self.input_dim}, "
                f"got shape {tuple(x.shape)}"
            )

    def _call(self, x: Tensor) -> Tensor:
        self._check(x, "x")
        return F.linear(x, self.weight, self.bias)

    def _inverse(self, y: Tensor) -> Tensor:
        self._check(y, "y")
        if self.bias is not None:
            y = y - self.bias
        return self.solve(y)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.log_abs_det.expand(x.shape[:-1])


def invertible_linear(
    input_dim: int, parametrization: str = "lu", bias: bool = False
) -> InvertibleLinear:
    r"""Build an :class:`InvertibleLinear` (a random rotation at initialisation).

    Arguments:
        input_dim: The event size :math:`D`.
        parametrization: ``"lu"`` or ``"qr"``.
        bias: Whether to add a learnable bias.

    Example:
        >>> invertible_linear(4)(torch.randn(2, 4)).shape
        torch.Size([2, 4])
    """
    return InvertibleLinear(input_dim, parametrization=parametrization, bias=bias)
