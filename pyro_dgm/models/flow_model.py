r"""A flow density as a Pyro model/guide pair: maximum likelihood through SVI."""

from __future__ import annotations

import pyro
import torch
from torch import Tensor, nn

from ..flows import Flow
from ..utils.checks import check_int
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

    def _check_data(self, x: Tensor) -> None:
        event_dim = len(self.flow.event_shape)
        if (
            not isinstance(x, Tensor)
            or x.dim() <= event_dim
            or x.shape[-event_dim:] != self.flow.event_shape
        ):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x must have shape (N, {', '.join(map(str, self.flow.event_shape))}), got {shape}"
            )

    def model(self, x: Tensor, context: Tensor | None = None) -> None:
        """The flow observes every data point: ``x ~ flow(context)`` in the data plate."""
        register_module(self.name, self.flow)
        self._check_data(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.flow(context), obs=x)

    def guide(self, x: Tensor, context: Tensor | None = None) -> None:
        """Empty: the flow has no latent variable."""

    def sample(self, num_samples: int, context: Tensor | None = None) -> Tensor:
        """Draw samples from the fitted flow (no gradient).

        Example:
            >>> from pyro_dgm.flows import RealNVP
            >>> FlowModel(RealNVP(2, num_layers=2)).sample(3).shape
            torch.Size([3, 2])
        """
        return self.flow(context).sample((num_samples,)).detach()

    @torch.no_grad()
    def posterior_predictive(
        self, x: Tensor, num_samples: int = 1, context: Tensor | None = None
    ) -> Tensor:
        r"""New data drawn for each data point, ``(num_samples, N, *event_shape)``, no
        gradient.

        With no latent variable the posterior predictive is the fitted density itself,
        :math:`p(\tilde x \mid x) = p(\tilde x)`, or :math:`p(\tilde x \mid c_i)` for
        a conditional flow with each point's context :math:`c_i`: the draws depend on
        ``x`` only through its number of rows. ``pyro.infer.Predictive(pair.model)``
        returns the observed ``x`` instead (Pyro's semantics for an observed site);
        this draws what ``Predictive(poutine.uncondition(pair.model))`` does.

        Arguments:
            x: Data ``(N, *event_shape)``.
            num_samples: Draws per data point.
            context: One context per data point, ``(N, context_dim)``, for a
                conditional flow.

        Example:
            >>> from pyro_dgm.flows import MAF
            >>> pair = FlowModel(MAF(2, num_layers=2))
            >>> pair.posterior_predictive(torch.randn(5, 2), num_samples=3).shape
            torch.Size([3, 5, 2])
        """
        self._check_data(x)
        n = check_int(num_samples, "num_samples", 1)
        d = self.flow(context)
        if d.batch_shape not in ((), x.shape[:1]):
            raise ValueError(
                f"context: expected one row per data point, batch shape ({len(x)},), got "
                f"batch shape {tuple(d.batch_shape)}"
            )
        return d.sample((n, len(x)) if d.batch_shape == () else (n,))
