r"""Likelihoods :math:`p(x \mid z)` of the VAE: modules that turn the decoder's output into a
Pyro distribution over one data point.

A likelihood declares ``num_params`` :math:`P`, the parameters it needs per data
coordinate: the decoder outputs ``(..., P * C, H, W)`` for images ``(C, H, W)``
and ``(..., P * D)`` for vectors ``(D,)`` (the parameters stacked along the first
event dimension). It also knows its data's domain: :meth:`Likelihood.check`
rejects data outside it with a ``ValueError``, :meth:`Likelihood.normalize`
maps data to the floating input of the encoder, and :meth:`Likelihood.observe`
gives the value the ``x`` site observes.

=============================================  ===========  ==================================
likelihood                                     :math:`P`    data
=============================================  ===========  ==================================
:class:`BernoulliLikelihood`                   1            binary, :math:`\{0, 1\}`
:class:`GaussianLikelihood`                    1 or 2       real (floating tensors)
:class:`DiscretizedLogisticLikelihood`         2            integers :math:`\{0, \dots, L-1\}`
:class:`DiscretizedLogisticMixtureLikelihood`  :math:`3K`   integers :math:`\{0, \dots, L-1\}`
:class:`CategoricalLikelihood`                 :math:`L`    integers :math:`\{0, \dots, L-1\}`
=============================================  ===========  ==================================

A Gaussian density on integer pixels is not a likelihood of the integers
(its density can exceed one, so "bits per dimension" computed from it are
meaningless): :class:`GaussianLikelihood` refuses integer data; use a
discretized likelihood, or dequantize first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...distributions import DiscretizedLogistic, DiscretizedLogisticMixture
from ...utils.checks import check_int, check_shape

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "GaussianLikelihood",
    "Likelihood",
]

_MIN_SCALE = 1e-3  # smooth lower bound of decoder-predicted scales: softplus(.) + 1e-3


class Likelihood(nn.Module):
    r"""Base class: the decoder's output ``(..., P * E_0, E_1, ...)`` to a distribution
    with event shape ``event_shape`` and the decoder output's batch shape.

    Arguments:
        event_shape: The shape of one data point, ``(D,)`` or ``(C, H, W)``.

    Example:
        >>> lik = GaussianLikelihood((3,), scale="decoder")  # P = 2 parameters per value
        >>> lik.param_shape
        torch.Size([6])
        >>> lik(torch.zeros(5, 6)).event_shape
        torch.Size([3])
    """

    num_params: int = 1

    def __init__(self, event_shape: Sequence[int] | int) -> None:
        super().__init__()
        self.event_shape = check_shape(event_shape, "event_shape")

    @property
    def param_shape(self) -> torch.Size:
        """The decoder's output shape for one data point."""
        return torch.Size([self.num_params * self.event_shape[0], *self.event_shape[1:]])

    def _split(self, params: Tensor, count: int) -> list[Tensor]:
        """``count`` tensors ``(..., *event_shape)`` from ``(..., count * E_0, E_1, ...)``."""
        rank = len(self.event_shape)
        if params.dim() < rank or params.shape[params.dim() - rank :] != self.param_shape:
            raise ValueError(
                f"{type(self).__name__}: decoder output must have shape "
                f"(..., {', '.join(map(str, self.param_shape))}), got {tuple(params.shape)}"
            )
        stacked = params.unflatten(-rank, (count, self.event_shape[0]))
        return list(stacked.unbind(-rank - 1))

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def check(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless every value of ``x`` lies in the data's domain."""
        if not torch.isfinite(x.double()).all():
            raise ValueError(f"x holds NaN or infinite values ({type(self).__name__})")

    def normalize(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """The encoder's floating input for data ``x``."""
        return x.to(dtype)

    def observe(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """The value observed at the ``x`` site (a float holding the data exactly)."""
        return x.to(dtype)


def _check_levels(x: Tensor, num_levels: int, owner: str) -> None:
    if x.is_complex():
        raise ValueError(f"{owner}: x must be real, got dtype {x.dtype}")
    values = x.double() if x.dtype != torch.bool else x.long()
    ok = (values >= 0) & (values <= num_levels - 1) & (values == values.floor())
    if not bool(ok.all()):
        bad = values[~ok].unique()[:6].tolist()
        raise ValueError(
            f"{owner}: x must hold integers in {{0, ..., {num_levels - 1}}}, got values {bad}"
        )


class BernoulliLikelihood(Likelihood):
    r"""Independent Bernoulli pixels for binary data, :math:`p(x \mid z) = \prod_i
    \mathrm{Bern}(x_i; \sigma(\eta_i))`, with the decoder output :math:`\eta` as logits.

    Scoring and sampling are :math:`O(D)`.

    Arguments:
        event_shape: The shape of one data point.

    Example:
        >>> lik = BernoulliLikelihood((1, 2, 2))
        >>> lik(torch.zeros(1, 2, 2)).log_prob(torch.ones(1, 2, 2))  # 4 pixels, p = 1/2
        tensor(-2.7726)
    """

    num_params = 1

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        (logits,) = self._split(params, 1)
        return dist.Bernoulli(logits=logits).to_event(len(self.event_shape))

    def check(self, x: Tensor) -> None:
        _check_levels(x, 2, type(self).__name__)


class GaussianLikelihood(Likelihood):
    r"""Independent Gaussian coordinates, :math:`p(x \mid z) = \mathcal{N}(x; \mu(z),
    \sigma^2)`, for real-valued (floating) data.

    .. math:: \log p(x \mid z) = -\sum_i \Big[\frac{(x_i - \mu_i)^2}{2 \sigma_i^2}
        + \log \sigma_i + \tfrac12 \log 2\pi\Big]

    Three choices of :math:`\sigma`:

    * ``scale=None`` (default): one learned scale shared by every coordinate,
      :math:`\sigma = e^{s}` (isotropic, as in probabilistic PCA);
    * ``scale=0.1`` (a number): a fixed scale;
    * ``scale="decoder"``: a scale per coordinate predicted by the decoder,
      :math:`\sigma_i = \operatorname{softplus}(\eta_i) + 10^{-3}` (then :math:`P = 2`).

    Arguments:
        event_shape: The shape of one data point.
        scale: ``None``, a positive number, or ``"decoder"``.
        init_scale: The initial value of a learned shared scale.

    Example:
        >>> lik = GaussianLikelihood((2,), scale=1.0)
        >>> lik(torch.zeros(2)).log_prob(torch.zeros(2))  # -log(2 pi)
        tensor(-1.8379)
    """

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        scale: float | str | None = None,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__(event_shape)
        self.mode = "learned" if scale is None else "decoder" if scale == "decoder" else "fixed"
        if self.mode == "fixed":
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
                raise ValueError(
                    f"scale must be None, a positive number or 'decoder', got {scale!r}"
                )
            self.register_buffer("fixed_scale", torch.tensor(float(scale)))
        elif self.mode == "learned":
            if not init_scale > 0:
                raise ValueError(f"init_scale must be positive, got {init_scale!r}")
            self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.num_params = 2 if self.mode == "decoder" else 1

    @property
    def scale(self) -> Tensor:
        """The shared scale :math:`\\sigma` (not for ``scale="decoder"``)."""
        if self.mode == "decoder":
            raise ValueError("scale='decoder': the scale depends on z; read it from forward()")
        return self.fixed_scale if self.mode == "fixed" else self.log_scale.exp()

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        if self.mode == "decoder":
            loc, raw = self._split(params, 2)
            scale = F.softplus(raw) + _MIN_SCALE
        else:
            (loc,) = self._split(params, 1)
            scale = self.scale.to(loc.dtype).expand(loc.shape)
        return dist.Normal(loc, scale).to_event(len(self.event_shape))

    def check(self, x: Tensor) -> None:
        if not x.is_floating_point():
            raise ValueError(
                f"GaussianLikelihood: x must be a floating tensor of real values, got dtype "
                f"{x.dtype}; for integer data use a discretized likelihood "
                "('discretized_logistic') or dequantize first"
            )
        super().check(x)


class DiscretizedLogisticLikelihood(Likelihood):
    r"""Independent discretized logistic pixels over :math:`\{0, \dots, L-1\}`
    (:class:`~pyro_dgm.distributions.DiscretizedLogistic`), as in the IAF paper.

    The decoder gives, per pixel, a location on PixelCNN++'s :math:`[-1, 1]`
    scale and a raw scale: :math:`\mu = (\eta_1 + 1)(L - 1)/2` levels and
    :math:`s = (\operatorname{softplus}(\eta_2) + 10^{-3})(L - 1)/2` levels.

    .. math:: P(x_i \mid z) = \sigma\Big(\frac{x_i + \frac12 - \mu_i}{s_i}\Big)
        - \sigma\Big(\frac{x_i - \frac12 - \mu_i}{s_i}\Big)

    (edge bins open). Scoring and sampling are :math:`O(D)`.

    References:
        | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016)
        | https://arxiv.org/abs/1606.04934

    Arguments:
        event_shape: The shape of one data point.
        num_levels: :math:`L`.

    Example:
        >>> lik = DiscretizedLogisticLikelihood((4,), num_levels=17)
        >>> p = lik(torch.zeros(8)).log_prob(torch.arange(4.0)).exp()
        >>> bool(0 < p < 1)
        True
    """

    num_params = 2

    def __init__(self, event_shape: Sequence[int] | int, num_levels: int) -> None:
        super().__init__(event_shape)
        self.num_levels = check_int(num_levels, "num_levels", 2)

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        loc, raw = self._split(params, 2)
        scale = F.softplus(raw) + _MIN_SCALE
        d = DiscretizedLogistic.from_pixelcnn_scale(loc, scale, self.num_levels)
        return d.to_event(len(self.event_shape))

    def check(self, x: Tensor) -> None:
        _check_levels(x, self.num_levels, type(self).__name__)

    def normalize(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        return x.to(dtype) / (self.num_levels - 1)


class DiscretizedLogisticMixtureLikelihood(DiscretizedLogisticLikelihood):
    r"""Per-pixel mixtures of :math:`K` discretized logistics over :math:`\{0, \dots, L-1\}`
    (:class:`~pyro_dgm.distributions.DiscretizedLogisticMixture`), as in PixelCNN++
    but with independent pixels given :math:`z`.

    .. math:: P(x_i \mid z) = \sum_{k=1}^K \pi_{ik}\, \mathrm{DLogistic}(x_i; \mu_{ik}, s_{ik})

    The decoder outputs :math:`3K` parameters per pixel (logits, locations and raw
    scales, as in :class:`DiscretizedLogisticLikelihood`). Scoring and sampling
    are :math:`O(KD)`.

    References:
        | PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood
          and Other Modifications (Salimans et al., 2017)
        | https://arxiv.org/abs/1701.05517

    Arguments:
        event_shape: The shape of one data point.
        num_levels: :math:`L`.
        num_components: :math:`K`.

    Example:
        >>> lik = DiscretizedLogisticMixtureLikelihood((1, 2, 2), num_levels=4, num_components=3)
        >>> lik.param_shape  # logits, locations and scales of 3 components per pixel
        torch.Size([9, 2, 2])
        >>> levels = torch.cartesian_prod(*[torch.arange(4.0)] * 4).reshape(-1, 1, 2, 2)
        >>> mass = lik(torch.randn(9, 2, 2)).log_prob(levels).exp().sum()  # over 4**4 images
        >>> round(mass.item(), 4)
        1.0
    """

    def __init__(
        self, event_shape: Sequence[int] | int, num_levels: int, num_components: int = 5
    ) -> None:
        super().__init__(event_shape, num_levels)
        self.num_components = check_int(num_components, "num_components", 1)
        self.num_params = 3 * num_components

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        k = self.num_components
        parts = self._split(params, 3 * k)
        logits, locs, raw = (torch.stack(parts[i * k : (i + 1) * k], dim=-1) for i in range(3))
        # a spread of initial locations, so that the components do not start identical
        offsets = torch.linspace(-0.5, 0.5, k, dtype=locs.dtype, device=locs.device)
        offsets = offsets if k > 1 else offsets.zero_()
        d = DiscretizedLogisticMixture.from_pixelcnn_scale(
            logits, locs + offsets, F.softplus(raw) + _MIN_SCALE, self.num_levels
        )
        return d.to_event(len(self.event_shape))


class LevelCategorical(dist.Categorical):
    r"""A categorical over the levels :math:`\{0, \dots, L-1\}` whose moments are those of
    the levels (Pyro's ``Categorical`` has no mean) and whose samples are floats holding
    integers, as the discretized distributions' are.

    .. math:: \mathbb E[x] = \sum_{l=0}^{L-1} l\, \pi_l

    Arguments:
        logits: Unnormalized log-probabilities ``(..., L)``.

    Example:
        >>> d = LevelCategorical(logits=torch.tensor([0.0, 0.0, 0.0]))
        >>> d.mean, d.sample().dtype
        (tensor(1.), torch.float32)
    """

    def _levels(self) -> Tensor:
        return torch.arange(
            self.logits.shape[-1], dtype=self.logits.dtype, device=self.logits.device
        )

    @property
    def mean(self) -> Tensor:
        return (self.probs * self._levels()).sum(-1)

    @property
    def variance(self) -> Tensor:
        levels = self._levels()
        mean = (self.probs * levels).sum(-1, keepdim=True)
        return (self.probs * (levels - mean) ** 2).sum(-1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return super().sample(torch.Size(sample_shape)).to(self.logits.dtype)


class CategoricalLikelihood(Likelihood):
    r"""Independent categorical pixels over :math:`\{0, \dots, L-1\}`: a softmax over the
    :math:`L` levels of each pixel, as the output of PixelCNN (van den Oord et al., 2016).

    .. math:: P(x_i = l \mid z) = \frac{e^{\eta_{il}}}{\sum_{m=0}^{L-1} e^{\eta_{im}}}

    The decoder outputs :math:`L` logits per pixel (``(L * C, H, W)`` for images, the
    levels stacked along the first event dimension like every likelihood's
    parameters). The probability is exact (no binning of a density) and makes no
    assumption of order or smoothness over the levels, at :math:`L` parameters per
    pixel: 17 for digits, 256 for 8-bit images. Scoring and sampling are :math:`O(LD)`.

    References:
        | Pixel Recurrent Neural Networks (van den Oord et al., 2016)
        | https://arxiv.org/abs/1601.06759

    Arguments:
        event_shape: The shape of one data point.
        num_levels: :math:`L`.

    Example:
        >>> lik = CategoricalLikelihood((1, 2, 2), num_levels=17)
        >>> lik.param_shape  # 17 logits per pixel
        torch.Size([17, 2, 2])
        >>> lik(torch.zeros(17, 2, 2)).log_prob(torch.zeros(1, 2, 2))  # 4 pixels, P = 1/17
        tensor(-11.3329)
    """

    def __init__(self, event_shape: Sequence[int] | int, num_levels: int) -> None:
        super().__init__(event_shape)
        self.num_levels = check_int(num_levels, "num_levels", 2)
        self.num_params = self.num_levels

    def forward(self, params: Tensor) -> dist.TorchDistribution:
        logits = torch.stack(self._split(params, self.num_levels), dim=-1)
        return LevelCategorical(logits=logits).to_event(len(self.event_shape))

    def check(self, x: Tensor) -> None:
        _check_levels(x, self.num_levels, type(self).__name__)

    def normalize(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        return x.to(dtype) / (self.num_levels - 1)


LIKELIHOODS = (
    "bernoulli",
    "gaussian",
    "discretized_logistic",
    "discretized_logistic_mixture",
    "categorical",
)
