r"""Amortized posteriors :math:`q(z \mid x)` of the VAE: modules that map the encoder's
context :math:`h` to a Pyro distribution over the latent :math:`z`.

Every posterior starts with a diagonal Gaussian stage,
:math:`z_0 \sim \mathcal{N}(\mu(h), \operatorname{diag}\sigma^2(h))`; a flow posterior
then pushes :math:`z_0` through :math:`K` transforms conditioned on :math:`h`,

.. math:: z_K = g_K(\cdot\,; h) \circ \dots \circ g_1(z_0; h), \qquad
    \log q(z_K \mid x) = \log \mathcal{N}(z_0; \mu, \sigma^2)
    - \sum_{k=1}^K \log \left|\det \frac{\partial g_k}{\partial z_{k-1}}\right| .

The guide samples :math:`z_K` and scores it through the transforms' caches, so a
posterior flow only needs a cheap forward pass and log-determinant: IAF (one
network pass per step), planar, Householder and Sylvester flows (no inverse in
closed form at all for planar and Sylvester). Pyro's ``ConditionalPlanar`` and
``ConditionalHouseholder`` are used as they are; the Sylvester steps are
:class:`~pyro_dgm.transforms.ConditionalSylvester`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import ConditionalTransformModule, TransformModule
from pyro.distributions.transforms import ConditionalHouseholder, ConditionalPlanar
from pyro.nn import ConditionalAutoRegressiveNN, DenseNN
from torch import Tensor, nn
from torch.distributions import Transform

from ...flows import FlowDistribution
from ...transforms.affine import ConditionedAffine
from ...transforms.autoregressive import ConditionalAffineAutoregressive
from ...transforms.sylvester import (
    ConditionalSylvester,
    ConditionedSylvester,
    conditional_sylvester,
)

__all__ = [
    "POSTERIORS",
    "ConditionalSylvester",
    "ConditionedSylvester",
    "FlowPosterior",
    "GaussianPosterior",
    "conditional_sylvester",
    "make_posterior",
]

_MIN_SCALE = 1e-5  # smooth lower bound of the Gaussian stage's scale: softplus(.) + 1e-5


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_context(h: Tensor, context_dim: int, owner: str) -> None:
    if h.dim() < 1 or h.shape[-1] != context_dim:
        raise ValueError(
            f"{owner}: context h must have shape (..., {context_dim}), got {tuple(h.shape)}"
        )


class GaussianPosterior(nn.Module):
    r"""The diagonal Gaussian posterior of the standard VAE.

    .. math:: q(z \mid x) = \mathcal{N}\big(z; \mu(h), \operatorname{diag}\sigma^2(h)\big),
        \quad \sigma = \operatorname{softplus}(\cdot) + 10^{-5}

    A linear layer maps the context :math:`h` to :math:`(\mu, \sigma)`. Sampling and
    scoring are :math:`O(D)` after that layer.

    References:
        | Auto-Encoding Variational Bayes (Kingma & Welling, 2014)
        | https://arxiv.org/abs/1312.6114

    Arguments:
        context_dim: The size of the encoder's context :math:`h`.
        latent_dim: The latent dimension :math:`D`.

    Example:
        >>> q = GaussianPosterior(context_dim=8, latent_dim=2)
        >>> d = q(torch.randn(5, 8))  # one distribution per data point
        >>> d.batch_shape, d.event_shape
        (torch.Size([5]), torch.Size([2]))
        >>> bool((q.gaussian(torch.randn(5, 8))[1] > 0).all())  # the scales
        True
    """

    def __init__(self, context_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.context_dim = _positive(context_dim, "context_dim")
        self.latent_dim = _positive(latent_dim, "latent_dim")
        self.head = nn.Linear(context_dim, 2 * latent_dim)

    def gaussian(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The Gaussian stage's location and scale, each ``(..., latent_dim)``."""
        _check_context(h, self.context_dim, type(self).__name__)
        loc, raw = self.head(h).chunk(2, dim=-1)
        return loc, F.softplus(raw) + _MIN_SCALE

    def forward(self, h: Tensor) -> dist.TorchDistribution:
        loc, scale = self.gaussian(h)
        return dist.Normal(loc, scale).to_event(1)


class FlowPosterior(GaussianPosterior):
    r"""A diagonal Gaussian stage followed by transforms conditioned on the context.

    .. math:: z_0 = \mu(h) + \sigma(h) \odot \epsilon, \quad \epsilon \sim \mathcal{N}(0, I),
        \qquad z_K = g_K(\cdot\,; h) \circ \dots \circ g_1(z_0; h)

    ``ConditionalTransformModule``\ s are conditioned on :math:`h`; plain
    ``TransformModule``\ s are shared by every data point. The Gaussian stage is
    the first transform (:class:`~pyro_dgm.transforms.ConditionedAffine` on the
    head's output), so the distribution is a :class:`~pyro_dgm.flows.FlowDistribution`
    over standard normal noise that reads the current parameters whenever it
    samples or scores. The guide's samples are scored through the transforms'
    caches: the cost of sampling and scoring is one forward pass of each
    transform (no inverse is needed).

    Arguments:
        context_dim: The size of the encoder's context :math:`h`.
        latent_dim: The latent dimension :math:`D`.
        transforms: The flow's layers, in sampling order.

    Example:
        >>> from pyro.distributions.transforms import conditional_planar
        >>> q = FlowPosterior(8, 2, [conditional_planar(2, context_dim=8) for _ in range(2)])
        >>> d = q(torch.randn(5, 8))
        >>> z = d.rsample()  # the Gaussian stage, then two planar steps conditioned on h
        >>> z.shape, d.log_prob(z).shape  # scored through the caches (no inverse)
        (torch.Size([5, 2]), torch.Size([5]))
    """

    def __init__(self, context_dim: int, latent_dim: int, transforms: Sequence[Transform]) -> None:
        super().__init__(context_dim, latent_dim)
        parts = list(transforms)
        for t in parts:
            if not isinstance(t, (ConditionalTransformModule, TransformModule)):
                raise ValueError(
                    "transforms must be TransformModules or ConditionalTransformModules, got "
                    f"{type(t).__name__}"
                )
        self.transforms = nn.ModuleList(parts)

    def forward(self, h: Tensor) -> FlowDistribution:
        _check_context(h, self.context_dim, type(self).__name__)
        zeros = self.head.weight.new_zeros(self.latent_dim)
        base = dist.Normal(zeros, zeros + 1.0).to_event(1).expand(h.shape[:-1])
        stage = ConditionedAffine(partial(self.gaussian, h))
        return FlowDistribution(base, [stage, *self.transforms], context=h, modules=[self])


# ---------------------------------------------------------------------------
# ready-made posteriors
# ---------------------------------------------------------------------------

POSTERIORS = ("gaussian", "iaf", "planar", "householder", "sylvester")


def make_posterior(
    kind: str,
    context_dim: int,
    latent_dim: int,
    num_steps: int = 4,
    hidden_dims: Sequence[int] | None = None,
) -> GaussianPosterior:
    r"""Build a posterior by name.

    * ``"gaussian"``: :class:`GaussianPosterior`.
    * ``"iaf"``: :math:`K` steps of Kingma et al.'s IAF conditioned on :math:`h`,
      :math:`z_k = \sigma_k \odot z_{k-1} + (1 - \sigma_k) \odot m_k`,
      :math:`[m_k, s_k] = \mathrm{MADE}_k(z_{k-1}, h)`, :math:`\sigma_k = \mathrm{sigmoid}(s_k)`
      (Pyro's ``stable=True`` layer, which starts near the identity), the
      variable order reversed between steps. One MADE pass per step.
    * ``"planar"``: :math:`K` of Pyro's ``ConditionalPlanar`` (Rezende & Mohamed, 2015).
    * ``"householder"``: :math:`K` reflections of Pyro's ``ConditionalHouseholder``
      (Tomczak & Welling, 2016), volume preserving: a full-covariance Gaussian.
    * ``"sylvester"``: :math:`K` steps of :class:`ConditionalSylvester`.

    Arguments:
        kind: One of :data:`POSTERIORS`.
        context_dim: The size of the encoder's context :math:`h`.
        latent_dim: The latent dimension :math:`D`.
        num_steps: :math:`K`, the flow steps.
        hidden_dims: Hidden sizes of each step's network (default ``[max(32, 4D)] * 2``).

    References:
        | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016)
        | https://arxiv.org/abs/1606.04934
        | Variational Inference with Normalizing Flows (Rezende & Mohamed, 2015)
        | https://arxiv.org/abs/1505.05770
        | Improving Variational Auto-Encoders using Householder Flow (Tomczak & Welling, 2016)
        | https://arxiv.org/abs/1611.09630
        | Sylvester Normalizing Flows for Variational Inference (van den Berg et al., 2018)
        | https://arxiv.org/abs/1803.05649

    Example:
        >>> q = make_posterior("iaf", context_dim=8, latent_dim=3, num_steps=2, hidden_dims=[16])
        >>> type(q).__name__, len(q.transforms)
        ('FlowPosterior', 2)
        >>> d = q(torch.randn(4, 8))
        >>> d.log_prob(d.rsample()).shape
        torch.Size([4])
        >>> type(make_posterior("gaussian", 8, 3)).__name__
        'GaussianPosterior'
    """
    if kind not in POSTERIORS:
        raise ValueError(f"posterior must be one of {', '.join(POSTERIORS)}; got {kind!r}")
    context_dim = _positive(context_dim, "context_dim")
    d = _positive(latent_dim, "latent_dim")
    if kind == "gaussian":
        return GaussianPosterior(context_dim, d)
    k = _positive(num_steps, "num_steps")
    hidden = list(hidden_dims) if hidden_dims is not None else [max(32, 4 * d)] * 2
    transforms: list[Transform]
    if kind == "iaf":
        if d < 2:
            raise ValueError(f"an IAF posterior needs latent_dim >= 2, got {d}")
        order = torch.arange(d)
        transforms = [
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(
                    d, context_dim, hidden, permutation=order if i % 2 == 0 else order.flip(0)
                ),
                stable=True,
            )
            for i in range(k)
        ]
    elif kind == "planar":
        transforms = [
            ConditionalPlanar(DenseNN(context_dim, hidden, param_dims=[1, d, d])) for _ in range(k)
        ]
    elif kind == "householder":
        net = DenseNN(context_dim, hidden, param_dims=[d] * k)
        transforms = [ConditionalHouseholder(d, net, count_transforms=k)]
    else:
        transforms = [conditional_sylvester(d, context_dim, hidden) for _ in range(k)]
    return FlowPosterior(context_dim, d, transforms)
