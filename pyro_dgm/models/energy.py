r"""Reverse KL: a flow as the guide of a model known only through an unnormalized log density."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import Tensor, nn

from ..flows import Flow
from ..utils.registration import register_module

__all__ = ["EnergyModel", "FlowGuide"]


class EnergyModel:
    r"""A Pyro model whose only content is an unnormalized log density :math:`\log \tilde p(z)`.

    The latent site has an improper flat prior (``ImproperUniform``) and the
    density enters through ``pyro.factor``, so the ELBO of a guide :math:`q` is

    .. math:: \mathcal{L}(q) = \mathbb{E}_{q(z)}[\log \tilde p(z) - \log q(z)]
        = \log Z - \mathrm{KL}(q \,\|\, p) \le \log Z,

    the reverse KL objective. Only a guide can sample this model.

    Arguments:
        log_density: Maps points ``(..., *event_shape)`` to unnormalized log densities ``(...)``.
        event_shape: The shape of one point.
        name: The latent site's name.

    Example:
        >>> from pyro_dgm.flows import IAF
        >>> energy = EnergyModel(lambda z: -0.5 * z.pow(2).sum(-1), event_shape=(2,))
        >>> guide = FlowGuide(IAF(2, num_layers=2))
    """

    def __init__(
        self,
        log_density: Callable[[Tensor], Tensor],
        event_shape: Sequence[int],
        name: str = "z",
    ) -> None:
        self.log_density = log_density
        self.event_shape = torch.Size(event_shape)
        self.name = name

    def model(self) -> Tensor:
        flat = dist.ImproperUniform(constraints.real_vector, (), self.event_shape)
        if len(self.event_shape) != 1:
            flat = dist.ImproperUniform(
                constraints.independent(constraints.real, len(self.event_shape)),
                (),
                self.event_shape,
            )
        z = pyro.sample(self.name, flat)
        pyro.factor(f"{self.name}_log_density", self.log_density(z))
        return z


class FlowGuide(nn.Module):
    r"""A guide that samples one latent site from a flow: :math:`z \sim q_\phi(z)`.

    For reverse KL the guide samples and scores its own samples, so an
    :class:`~pyro_dgm.flows.IAF` (one pass per layer both ways, through the
    cache) is the natural flow; a MAF samples in :math:`D` sequential passes.
    The guide takes and ignores the model's arguments.

    Arguments:
        flow: The flow distribution module.
        name: The latent site's name.
    """

    def __init__(self, flow: Flow, name: str = "z") -> None:
        super().__init__()
        self.flow = flow
        self.name = name

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        register_module(f"{self.name}_guide_flow", self.flow)
        return pyro.sample(self.name, self.flow())
