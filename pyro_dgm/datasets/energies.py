r"""The four 2-D energy functions of Rezende & Mohamed (2015), targets for variational inference.

Each energy :math:`U` defines the unnormalized density :math:`p(z) \propto e^{-U(z)}` on
:math:`\mathbb{R}^2`. A guide :math:`q` fitted by reverse KL maximizes the ELBO
:math:`\mathbb{E}_q[-U(z) - \log q(z)] \le \log Z`, so :math:`\log Z` is the ceiling a
perfect guide reaches.

:math:`U_1` is normalizable on the plane. :math:`U_2, U_3, U_4` are not: they do not
depend on how far :math:`z_1` goes, so their mass grows without bound with the range of
:math:`z_1`; a test of reverse KL fixes a box, here :math:`[-4, 4]^2` (:data:`ENERGY_LOG_Z`).

References:
    | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015), Table 1
    | https://arxiv.org/abs/1505.05770
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..utils.checks import check_int, check_number

__all__ = [
    "ENERGY_LOG_Z",
    "ENERGY_NAMES",
    "U1",
    "U2",
    "U3",
    "U4",
    "energy_log_density",
    "log_normalizer",
]

ENERGY_NAMES = ("U1", "U2", "U3", "U4")

# log Z = log int exp(-U(z)) dz: U1 over the plane, U2-U4 over the box [-4, 4]^2.
# Computed by log_normalizer(name, steps=4001) (trapezoid, float64; 2001 nodes change them by
# < 2e-7, and a box of half side 6 changes U1's by 1e-8), and checked in the tests against an
# independent integration (polar Gauss-Legendre for U1; for U2-U4 the z2 integral in closed
# form, then scipy.integrate.quad in z1).
# design.md gives 1.8775, 2.083, 2.642, 2.685 (its U2 figure is 0.0009 high).
ENERGY_LOG_Z: dict[str, float] = {
    "U1": 1.87750,  # over the plane (the mass outside [-4, 4]^2 is 1e-8 of Z)
    "U2": 2.08209,  # on [-4, 4]^2; = log(8 * 0.4 sqrt(2 pi)) up to the Gaussian tails cut off
    "U3": 2.64171,  # on [-4, 4]^2
    "U4": 2.68457,  # on [-4, 4]^2
}


def _check_z(z: Tensor) -> None:
    if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != 2:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z: expected a tensor of shape (..., 2), got {shape}")
    if not z.is_floating_point():
        raise ValueError(f"z: expected a floating dtype, got {z.dtype}")


def _w1(z: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _w2(z: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z[..., 0] - 1) / 0.6).square())


def _w3(z: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)


def U1(z: Tensor) -> Tensor:
    r"""The ring energy :math:`U_1` of Rezende & Mohamed (2015).

    .. math:: U_1(z) = \frac12 \left( \frac{\|z\| - 2}{0.4} \right)^2
        - \log\left( e^{-\frac12 \left( \frac{z_1 - 2}{0.6} \right)^2}
        + e^{-\frac12 \left( \frac{z_1 + 2}{0.6} \right)^2} \right).

    Normalizable on the plane: :math:`\log Z = 1.8775`.

    Arguments:
        z: Points, shape :math:`(*, 2)`.

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Returns:
        The energies, shape :math:`(*)`.

    Example:
        >>> U1(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))  # on the ring, at its centre
        tensor([-2.2336e-10,  1.7362e+01])
    """
    _check_z(z)
    ring = 0.5 * ((z.norm(dim=-1) - 2) / 0.4).square()
    a = -0.5 * ((z[..., 0] - 2) / 0.6).square()
    b = -0.5 * ((z[..., 0] + 2) / 0.6).square()
    return ring - torch.logaddexp(a, b)


def U2(z: Tensor) -> Tensor:
    r"""The sine-wave energy :math:`U_2` of Rezende & Mohamed (2015).

    .. math:: U_2(z) = \frac12 \left( \frac{z_2 - w_1(z)}{0.4} \right)^2, \quad
        w_1(z) = \sin\left( \frac{2\pi z_1}{4} \right).

    Not normalizable on the plane; :math:`\log Z = 2.0821` on :math:`[-4, 4]^2`.

    Arguments:
        z: Points, shape :math:`(*, 2)`.

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Returns:
        The energies, shape :math:`(*)`.

    Example:
        >>> U2(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # both on the wave z2 = sin(pi z1 / 2)
        tensor([0., 0.])
    """
    _check_z(z)
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4).square()


def U3(z: Tensor) -> Tensor:
    r"""The split sine-wave energy :math:`U_3` of Rezende & Mohamed (2015).

    .. math:: U_3(z) = -\log\left( e^{-\frac12 \left( \frac{z_2 - w_1(z)}{0.35} \right)^2}
        + e^{-\frac12 \left( \frac{z_2 - w_1(z) + w_2(z)}{0.35} \right)^2} \right), \quad
        w_2(z) = 3 e^{-\frac12 \left( \frac{z_1 - 1}{0.6} \right)^2}.

    Not normalizable on the plane; :math:`\log Z = 2.6417` on :math:`[-4, 4]^2`.

    Arguments:
        z: Points, shape :math:`(*, 2)`.

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Returns:
        The energies, shape :math:`(*)`.

    Example:
        >>> U3(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    _check_z(z)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.35).square()
    b = -0.5 * ((z[..., 1] - _w1(z) + _w2(z)) / 0.35).square()
    return -torch.logaddexp(a, b)


def U4(z: Tensor) -> Tensor:
    r"""The sigmoid-step sine-wave energy :math:`U_4` of Rezende & Mohamed (2015).

    .. math:: U_4(z) = -\log\left( e^{-\frac12 \left( \frac{z_2 - w_1(z)}{0.4} \right)^2}
        + e^{-\frac12 \left( \frac{z_2 - w_1(z) + w_3(z)}{0.35} \right)^2} \right), \quad
        w_3(z) = 3 \sigma\left( \frac{z_1 - 1}{0.3} \right),

    with :math:`\sigma` the logistic sigmoid. Not normalizable on the plane;
    :math:`\log Z = 2.6846` on :math:`[-4, 4]^2`.

    Arguments:
        z: Points, shape :math:`(*, 2)`.

    References:
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770

    Returns:
        The energies, shape :math:`(*)`.

    Example:
        >>> U4(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    _check_z(z)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.4).square()
    b = -0.5 * ((z[..., 1] - _w1(z) + _w3(z)) / 0.35).square()
    return -torch.logaddexp(a, b)


_ENERGIES: dict[str, Callable[[Tensor], Tensor]] = {"U1": U1, "U2": U2, "U3": U3, "U4": U4}


def _energy(name: str) -> Callable[[Tensor], Tensor]:
    if name not in _ENERGIES:
        raise ValueError(f"name: expected one of {list(ENERGY_NAMES)}, got {name!r}")
    return _ENERGIES[name]


def energy_log_density(name: str) -> Callable[[Tensor], Tensor]:
    r"""Returns the unnormalized log density :math:`z \mapsto -U(z)` of an energy.

    Arguments:
        name: ``"U1"``, ``"U2"``, ``"U3"`` or ``"U4"``.

    Returns:
        A function from points of shape :math:`(*, 2)` to log densities of shape :math:`(*)`.

    Example:
        >>> log_p = energy_log_density("U2")
        >>> log_p(torch.zeros(3, 2))
        tensor([-0., -0., -0.])
    """
    energy = _energy(name)

    def log_density(z: Tensor) -> Tensor:
        return -energy(z)

    log_density.__name__ = f"minus_{name}"
    log_density.__qualname__ = log_density.__name__
    log_density.__doc__ = f"The unnormalized log density -{name}(z) (Rezende & Mohamed, 2015)."
    return log_density


def log_normalizer(name: str, box: float = 4.0, steps: int = 1001) -> float:
    r"""Integrates :math:`e^{-U}` over a box by the 2-D trapezoidal rule.

    .. math:: \log Z_B = \log \int_{[-B, B]^2} e^{-U(z)}\, dz.

    The rule uses ``steps`` nodes per axis (cost :math:`O(\text{steps}^2)`, in float64 and
    in slabs, so memory stays small); its error is :math:`O(h^2)`, :math:`h = 2B /
    (\text{steps} - 1)`, below :math:`10^{-6}` at the defaults.

    Arguments:
        name: ``"U1"``, ``"U2"``, ``"U3"`` or ``"U4"``.
        box: The half side :math:`B > 0` of the box.
        steps: The number of nodes per axis, at least 3.

    Returns:
        :math:`\log Z_B` in nats.

    Example:
        >>> round(log_normalizer("U2", steps=401), 4)
        2.0821
    """
    energy = _energy(name)
    check_number(box, "box", positive=True)
    check_int(steps, "steps", 3)
    grid = torch.linspace(-box, box, steps, dtype=torch.float64)
    h = 2 * box / (steps - 1)
    log_w = torch.full((steps,), math.log(h), dtype=torch.float64)
    log_w[0] = log_w[-1] = math.log(h / 2)
    rows = []
    for block in torch.arange(steps).split(256):
        z = torch.stack(torch.meshgrid(grid[block], grid, indexing="ij"), dim=-1)
        log_f = -energy(z) + log_w[block, None] + log_w[None, :]
        rows.append(torch.logsumexp(log_f.flatten(), dim=0))
    return float(torch.logsumexp(torch.stack(rows), dim=0))
