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
    r"""A guide that samples one latent site from a flow: :math:`z \sim q_\phi(z)`, or,
    amortized, :math:`z \sim q_\phi(z \mid c(x))` with a context network :math:`c`.

    For reverse KL the guide samples and scores its own samples, so an
    :class:`~pyro_dgm.flows.IAF` (one pass per layer both ways, through the
    cache) is the natural flow; a MAF samples in :math:`D` sequential passes.

    Without ``context`` the guide takes and ignores the model's arguments. With it,
    ``context(*args, **kwargs)`` maps the model's arguments to the context of a
    conditional flow (one row per latent, e.g. per group of a hierarchical model), and
    with ``plate`` the site sits in ``pyro.plate(plate, n, dim=plate_dim)`` over those
    rows, as the model's latent does (Pyro's checks want the model's plates in the guide).

    Arguments:
        flow: The flow distribution module (conditional when ``context`` is given).
        name: The latent site's name.
        context: A module (or function) from the model's arguments to the flow's context,
            of shape ``batch + (context_dim,)``; its parameters are trained with the flow's.
        plate: The name of the model's plate over the latent's rows, or ``None``.
        plate_dim: That plate's ``dim``.

    Example:
        >>> from pyro_dgm.flows import IAF
        >>> guide = FlowGuide(IAF(2, num_layers=2, context_dim=3), context=nn.Linear(4, 3),
        ...                   plate="groups")
        >>> guide(torch.randn(8, 4)).shape  # one latent per group, amortized over the groups
        torch.Size([8, 2])
    """

    def __init__(
        self,
        flow: Flow,
        name: str = "z",
        context: Callable[..., Tensor] | None = None,
        plate: str | None = None,
        plate_dim: int = -1,
    ) -> None:
        super().__init__()
        if not isinstance(flow, Flow):
            raise ValueError(f"flow: expected a pyro_dgm Flow, got {type(flow).__name__}")
        if flow.is_conditional and context is None:
            raise ValueError(
                "context: the flow is conditional; pass context=, a module from the model's "
                "arguments to the flow's context (an amortized guide)"
            )
        if context is not None and not flow.is_conditional:
            raise ValueError(
                "context: given, but the flow takes no context; build it with context_dim="
            )
        if plate is not None and context is None:
            raise ValueError("plate: a plate over the latent's rows needs context= to size it")
        if not isinstance(plate_dim, int) or plate_dim >= 0:
            raise ValueError(f"plate_dim: expected a negative int, got {plate_dim!r}")
        self.flow = flow
        self.name = name
        self.context = context
        self.plate, self.plate_dim = plate, plate_dim

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        register_module(f"{self.name}_guide_flow", self.flow)
        if isinstance(self.context, nn.Module):
            register_module(f"{self.name}_guide_context", self.context)
        if self.context is None:
            return pyro.sample(self.name, self.flow())
        c = self.context(*args, **kwargs)
        if self.plate is None:
            return pyro.sample(self.name, self.flow(c))
        size = c.shape[self.plate_dim - 1]
        with pyro.plate(self.plate, size, dim=self.plate_dim):
            return pyro.sample(self.name, self.flow(c))
