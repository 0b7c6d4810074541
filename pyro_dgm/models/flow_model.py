r"""A flow density as a Pyro model/guide pair: maximum likelihood through SVI."""

from __future__ import annotations

import pyro
from torch import Tensor, nn

from ..flows import Flow
from ..utils.registration import register_module

__all__ = ["FlowModel"]


class FlowModel(nn.Module):
    r"""Fit a :class:`~pyro_dgm.flows.Flow` to data by maximum likelihood (forward KL).

    The model observes every data point under the flow; the guide is empty.
    With no latent variable, the ELBO *is* the log-likelihood (a flow is a VAE
    whose encoder and decoder are deterministic and inverse to each other):

    .. math:: \mathrm{ELBO}(x) = \log p(x) = \log p_Z(f(x)) + \log|\det J_f(x)|

    so ``Trace_ELBO`` and :func:`~pyro_dgm.infer.fit` minimise the exact
    negative log-likelihood.

    Arguments:
        flow: The flow distribution module.
        name: The name under which the flow's parameters are registered.

    Example:
        >>> import torch
        >>> from pyro_dgm.flows import MAF
        >>> pair = FlowModel(MAF(2, num_layers=2))
        >>> pair.model(torch.randn(5, 2))
    """

    def __init__(self, flow: Flow, name: str = "flow") -> None:
        super().__init__()
        self.flow = flow
        self.name = name

    def model(self, x: Tensor, context: Tensor | None = None) -> None:
        register_module(self.name, self.flow)
        event_dim = len(self.flow.event_shape)
        if x.dim() <= event_dim or x.shape[-event_dim:] != self.flow.event_shape:
            raise ValueError(
                f"x must have shape (N, {', '.join(map(str, self.flow.event_shape))}), "
                f"got {tuple(x.shape)}"
            )
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.flow(context), obs=x)

    def guide(self, x: Tensor, context: Tensor | None = None) -> None:
        """Empty: the flow has no latent variable."""

    def sample(self, num_samples: int, context: Tensor | None = None) -> Tensor:
        """Draw samples from the fitted flow (no gradient)."""
        return self.flow(context).sample((num_samples,)).detach()
