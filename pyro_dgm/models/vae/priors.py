r"""Priors :math:`p(z)` of the VAE: modules that return a Pyro distribution over the latent
when called, ``prior()`` (batch shape ``()``, event shape ``(latent_dim,)``).

The prior enters the ELBO only through the cross-entropy with the aggregated
posterior (ELBO surgery, Hoffman & Johnson, 2016),

.. math:: \frac1n \sum_i \mathcal{L}_i = \underbrace{\frac1n \sum_i \mathbb{E}_{q(z|x_i)}
    \log p(x_i \mid z)}_{\text{reconstruction}} - \mathbb{I}_q[x, z]
    - \mathrm{KL}\big(q_\text{agg}(z) \,\|\, p(z)\big),

so the best prior is the aggregated posterior :math:`q_\text{agg}(z) = \frac1n
\sum_i q(z \mid x_i)`. A learned prior (a flow in latent space, or a mixture of
posteriors at learned pseudo-inputs) moves towards it.

A prior is always *scored at the guide's samples* (values it did not draw) and
sampled only to generate. See :func:`flow_prior` for what this means for
autoregressive flows.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ...flows import IAF, MAF, Flow, RealNVP
from ...utils.checks import check_int
from .posteriors import GaussianPosterior

__all__ = ["PRIORS", "StandardNormalPrior", "VampPrior", "flow_prior"]

PRIORS = ("normal", "flow", "vamp")


class StandardNormalPrior(nn.Module):
    r"""The standard normal prior, :math:`p(z) = \mathcal{N}(0, I_D)`.

    Its buffers follow the module (``.to``, ``.double()``). Sampling and scoring
    are :math:`O(D)`.

    Arguments:
        latent_dim: :math:`D`.

    Example:
        >>> StandardNormalPrior(3)().log_prob(torch.zeros(3))
        tensor(-2.7568)
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = check_int(latent_dim, "latent_dim", 1)
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


def flow_prior(
    latent_dim: int,
    kind: str = "maf",
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
) -> Flow:
    r"""A learned flow prior in latent space (a :class:`~pyro_dgm.flows.Flow`).

    .. math:: \log p(z) = \log \mathcal{N}(f(z); 0, I) + \log\left|\det \frac{\partial f}
        {\partial z}\right|

    *Is IAF fine as a prior?* It is a valid density, so the ELBO stays a bound on
    :math:`\log p(x)`; the objection is cost. At every training step the prior is
    scored at the guide's samples :math:`z \sim q(z \mid x)`, arbitrary values
    that it did not draw itself, so no cache helps: scoring needs the inverse
    :math:`f`. For IAF the inverse is sequential, :math:`D` MADE passes per layer
    (:math:`D` = ``latent_dim``), for every training step and every point. MAF
    is the same layer used the other way: scoring is one pass per layer, and its
    :math:`D` sequential passes move to sampling, which a prior only does to
    generate. So ``kind="maf"`` is the default; ``"realnvp"`` (couplings, one
    pass both ways) is the other cheap choice; ``"iaf"`` is accepted and works,
    at :math:`D` times the scoring cost.

    References:
        | Variational Lossy Autoencoder (Chen et al., 2017)
        | https://arxiv.org/abs/1611.02731
        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        latent_dim: :math:`D`.
        kind: ``"maf"``, ``"realnvp"`` or ``"iaf"``.
        num_layers: Flow layers.
        hidden_dims: Hidden sizes of each layer's network.

    Example:
        >>> prior = flow_prior(4, "realnvp", num_layers=2)
        >>> prior().log_prob(torch.zeros(3, 4)).shape
        torch.Size([3])
    """
    builders = {"maf": MAF, "realnvp": RealNVP, "iaf": IAF}
    if kind not in builders:
        raise ValueError(f"kind must be one of {', '.join(builders)}; got {kind!r}")
    d = check_int(latent_dim, "latent_dim", 1)
    if d < 2:
        raise ValueError(f"a flow prior needs latent_dim >= 2, got {d}")
    return builders[kind](
        d, num_layers=check_int(num_layers, "num_layers", 1), hidden_dims=hidden_dims
    )


class VampPrior(nn.Module):
    r"""The VampPrior: a uniform mixture of the posterior's Gaussian stage at :math:`K`
    learned pseudo-inputs :math:`u_k` (Tomczak & Welling, 2018).

    .. math:: p(z) = \frac1K \sum_{k=1}^K \mathcal{N}\big(z; \mu(h(u_k)),
        \operatorname{diag}\sigma^2(h(u_k))\big)

    The practical form of the optimal prior, the aggregated posterior, with
    :math:`K \ll n` learned pseudo-inputs in place of the data. The encoder and
    the posterior head are *shared* with the VAE (pass the same modules).
    Scoring costs :math:`K` encoder passes (once per call) and :math:`O(KD)` per
    value; sampling picks a component, then draws from it.

    *With a flow posterior*, the mixture components are the posterior's diagonal
    Gaussian stage :math:`q_0(z \mid u_k)`, not the full flow posterior
    :math:`q(z \mid u_k)`. The prior is scored at the guide's samples, arbitrary
    values for each component: an IAF component would need the inverse flow,
    :math:`D` sequential MADE passes per step, for each of the :math:`K`
    components at every point and step; planar and Sylvester steps have no
    inverse at all. The Gaussian stage keeps the prior a normalized density (so
    the ELBO and the importance-weighted bound stay bounds) at the cost of the
    standard VampPrior. With the Gaussian posterior the components *are* the
    posteriors, exactly as in the paper.

    References:
        | VAE with a VampPrior (Tomczak & Welling, 2018)
        | https://arxiv.org/abs/1705.07120

    Arguments:
        encoder: The VAE's encoder, from normalized inputs to the context :math:`h`.
        posterior: The VAE's posterior head (its Gaussian stage is used).
        num_components: :math:`K`, the pseudo-inputs.
        input_shape: The shape of one encoder input (default: ``encoder.input_shape``).
        init: Initial pseudo-inputs ``(K, *input_shape)`` on the encoder's input
            scale (default: uniform on :math:`[0, 1)`, the scale of normalized pixels).

    Example:
        >>> from pyro_dgm.models.vae import GaussianPosterior, MLPEncoder
        >>> encoder = MLPEncoder(6, hidden_dims=(8,))
        >>> prior = VampPrior(encoder, GaussianPosterior(8, 2), num_components=5)
        >>> p = prior()
        >>> p.batch_shape, p.event_shape, p.log_prob(torch.zeros(4, 2)).shape
        (torch.Size([]), torch.Size([2]), torch.Size([4]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        posterior: GaussianPosterior,
        num_components: int = 50,
        input_shape: Sequence[int] | None = None,
        init: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not hasattr(posterior, "gaussian"):
            raise ValueError(
                "posterior must have a Gaussian stage (a GaussianPosterior or FlowPosterior), "
                f"got {type(posterior).__name__}"
            )
        k = check_int(num_components, "num_components", 1)
        shape = input_shape if input_shape is not None else getattr(encoder, "input_shape", None)
        if shape is None:
            raise ValueError("input_shape is required: the encoder has no input_shape attribute")
        shape = torch.Size(shape)
        if init is None:
            init = torch.rand(k, *shape)
        elif not isinstance(init, Tensor) or not init.is_floating_point():
            raise ValueError(f"init must be a floating tensor, got {init!r:.60}")
        elif init.shape != (k, *shape):
            raise ValueError(
                f"init must have shape {(k, *shape)} (num_components, *input_shape), "
                f"got {tuple(init.shape)}"
            )
        self.encoder = encoder
        self.posterior = posterior
        self.latent_dim = posterior.latent_dim
        self.pseudo_inputs = nn.Parameter(init.detach().clone())

    @property
    def num_components(self) -> int:
        return self.pseudo_inputs.shape[0]

    def forward(self) -> dist.TorchDistribution:
        loc, scale = self.posterior.gaussian(self.encoder(self.pseudo_inputs))
        weights = dist.Categorical(logits=loc.new_zeros(self.num_components))
        return dist.MixtureSameFamily(weights, dist.Normal(loc, scale).to_event(1))
