r"""Dequantization: discrete data and a continuous density as one Pyro model with a
latent noise site, and a uniform or a flow guide over that noise.

Discrete data :math:`y \in \{0, \dots, L-1\}^D` and a continuous density
:math:`p(x)` (any pyro_dgm flow: vector, image or zuko) become one model whose
latent site ``"u"`` has the prior :math:`\mathcal{U}[0, 1)^D` and whose observed
site ``"w"`` scores :math:`w = y + u \in [0, L]^D`:

.. math:: \log p(y, u) = \log p_W(y + u), \qquad
    P(y) = \int_{[0,1)^D} p_W(y + u)\, du ,

where :math:`p_W` is the density pushed onto the data scale by the
pre-processing :math:`w = L\, v(x)`, with its exact Jacobian (``"logit"``:
:math:`v` is :class:`~pyro_dgm.transforms.logit.LogitTransform`; ``"unit"``:
:math:`v(x) = x`, so :math:`x = w / L`). The cells :math:`y + [0, 1)^D` are
disjoint, so :math:`\sum_y P(y) \le 1`: :math:`P` is a (sub-)probability of the
discrete data and every bound below is a bound on :math:`\log P(y)`.

A guide :math:`q(u \mid y)` then gives the evidence lower bound of the discrete
data, :math:`\log P(y) \ge \mathbb{E}_q[\log p_W(y + u) - \log q(u \mid y)]`, which
``Trace_ELBO`` and :func:`~pyro_dgm.infer.fit` maximise, and the
importance-weighted bound of :func:`~pyro_dgm.infer.importance_log_likelihood`
rises to :math:`\log P(y)` as its number of samples grows. Nothing about
dequantization is in the flow: it is all in this model/guide pair.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions import AffineTransform, Distribution, SigmoidTransform, Transform
from torch.distributions.transforms import ReshapeTransform

from ..flows import Flow, FlowDistribution
from ..transforms.coupling import (
    alternating_mask,
    conditional_masked_affine_coupling,
    half_mask,
)
from ..transforms.logit import LogitTransform, NormalToLogisticTransform
from ..utils.registration import register_module

__all__ = [
    "DEQUANTIZATIONS",
    "UniformDequantization",
    "VariationalDequantization",
    "dequantization_features",
    "dequantization_noise_flow",
]

PREPROCESSING = ("logit", "unit")


def _listed(values: Tensor, limit: int = 6) -> str:
    values = values.unique()
    shown = ", ".join(f"{v:g}" for v in values[:limit].tolist())
    return shown + (f" (and {values.numel() - limit} more)" if values.numel() > limit else "")


def _first_float(obj: object, depth: int = 0) -> Tensor | None:
    """A floating tensor held by a module or a distribution, to take dtype and device from."""
    if isinstance(obj, nn.Module):
        for t in itertools.chain(obj.parameters(), obj.buffers()):  # lazily: stops at the first
            if t.is_floating_point():
                return t
        return None
    if isinstance(obj, Distribution) and depth < 8:
        for value in vars(obj).values():
            if isinstance(value, Tensor) and value.is_floating_point():
                return value
            if isinstance(value, Distribution):
                found = _first_float(value, depth + 1)
                if found is not None:
                    return found
    return None


class _Dequantization(nn.Module):
    r"""The model shared by both dequantizations; subclasses add the guide."""

    def __init__(
        self,
        density: nn.Module | Distribution,
        num_levels: int,
        *,
        event_shape: Sequence[int] | None = None,
        preprocess: str = "logit",
        alpha: float = 0.05,
        name: str = "dequantization",
    ) -> None:
        super().__init__()
        if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 2:
            raise ValueError(f"num_levels must be an integer >= 2, got {num_levels!r}")
        if preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {PREPROCESSING}, got {preprocess!r}")
        if isinstance(density, Distribution):
            self._fixed_density: Distribution | None = density
            self.density = None
        elif isinstance(density, nn.Module):
            if getattr(density, "is_conditional", False):
                raise ValueError(
                    "density must be unconditional: dequantization scores p(y + u) "
                    f"without a context, got a conditional {type(density).__name__}"
                )
            self._fixed_density = None
            self.density = density
        else:
            raise ValueError(
                "density must be an nn.Module whose call returns a distribution (a Flow) "
                f"or a Distribution, got {type(density).__name__}"
            )
        density_dist = self.density_distribution()
        density_shape = density_dist.event_shape
        if len(density_shape) == 0:
            raise ValueError("density must have a non-empty event shape, got ()")
        if density_dist.batch_shape != ():
            raise ValueError(
                "density must describe one data point (batch shape ()), got batch shape "
                f"{tuple(density_dist.batch_shape)}: the plate over the data adds the batch"
            )
        shape = torch.Size(density_shape if event_shape is None else event_shape)
        if math.prod(shape) != math.prod(density_shape) or len(shape) == 0:
            raise ValueError(
                f"event_shape {tuple(shape)} of the data does not match the density's event "
                f"shape {tuple(density_shape)}: they must hold the same number of values"
            )
        self.num_levels = num_levels
        self.event_shape = shape
        self.density_event_shape = density_shape
        self.preprocess = preprocess
        self.alpha = alpha
        self.name = name
        self._preprocessing = self._build_preprocessing()

    def _build_preprocessing(self) -> list[Transform]:
        """From the density's domain to the data scale :math:`w \\in [0, L]^D`."""
        k = len(self.event_shape)
        parts: list[Transform] = []
        if self.density_event_shape != self.event_shape:
            parts.append(ReshapeTransform(self.density_event_shape, self.event_shape))
        if self.preprocess == "logit":
            parts.append(LogitTransform(self.alpha, event_dim=k))
        parts.append(AffineTransform(0.0, float(self.num_levels), event_dim=k))
        return parts

    @property
    def num_dims(self) -> int:
        """:math:`D`, the values per data point (bits/dim divide by it)."""
        return math.prod(self.event_shape)

    def density_distribution(self) -> Distribution:
        """The continuous density :math:`p(x)` on its own domain."""
        if self._fixed_density is not None:
            return self._fixed_density
        d = self.density()
        if not isinstance(d, Distribution):
            raise ValueError(
                f"calling the density must return a Distribution, got {type(d).__name__}"
            )
        return d

    def dequantized_distribution(self) -> FlowDistribution:
        r"""The density :math:`p_W` of :math:`w = y + u` on the data scale :math:`[0, L]^D`,
        including the exact Jacobian of the pre-processing."""
        return FlowDistribution(self.density_distribution(), self._preprocessing)

    @torch.no_grad()
    def sample(self, num_samples: int, max_rounds: int = 100, outside: str = "reject") -> Tensor:
        r"""Draw discrete data: :math:`w \sim p_W`, then :math:`y = \lfloor w \rfloor`
        (the level whose cell :math:`[y, y + 1)` holds :math:`w`), as ``long``.

        The density may put mass outside :math:`[0, L)^D`, which is no level: with
        ``preprocess="unit"``, and with ``"logit"`` when ``alpha > 0`` (its box is
        :math:`\alpha L / (1 - 2\alpha)` wider than :math:`[0, L]` on each side, so a
        trained model of images with a black background draws many pixels just below
        0). ``outside`` says what to do with such draws:

        * ``"reject"``: redraw the whole data point, so the samples follow the model
          conditioned on a valid :math:`y` (exact, but slow when most draws have some
          pixel outside);
        * ``"nearest"``: give each pixel outside the nearest level (0 or
          :math:`L - 1`), as image models' samples are usually shown; the samples
          then follow the model with the mass outside the box moved to its edges.

        Raises:
            ValueError: If ``outside="reject"`` found fewer than ``num_samples`` valid
                draws in ``max_rounds`` rounds (the density lies mostly outside the box),
                or ``outside`` is neither of the above.
        """
        if outside not in ("reject", "nearest"):
            raise ValueError(f"outside must be 'reject' or 'nearest', got {outside!r}")
        if outside == "nearest":
            w = self.dequantized_distribution().sample((num_samples,))
            w = w.reshape(num_samples, *self.event_shape).floor()
            return w.clamp(0, self.num_levels - 1).long()
        kept, found, drawn = [], 0, 0
        for _ in range(max_rounds):
            w = self.dequantized_distribution().sample((num_samples,))
            w = w.reshape(num_samples, *self.event_shape)
            inside = ((w >= 0) & (w < self.num_levels)).flatten(1).all(1)
            kept.append(w[inside])
            found, drawn = found + int(inside.sum()), drawn + num_samples
            if found >= num_samples:
                return torch.cat(kept)[:num_samples].floor().long()
        raise ValueError(
            f"only {found} of {drawn} draws of the density fell inside [0, {self.num_levels})^D; "
            f"the density does not describe levels 0..{self.num_levels - 1} well enough for "
            "rejection: pass outside='nearest' to move the pixels outside to the nearest level"
        )

    def _reference(self) -> Tensor:
        found = _first_float(self.density if self.density is not None else self._fixed_density)
        return found if found is not None else torch.zeros(())

    def check_data(self, y: Tensor, name: str = "y") -> Tensor:
        """Validate discrete data and return it as floats of the density's dtype.

        Raises:
            ValueError: For a wrong shape, NaN, non-integers, or values outside
                :math:`\\{0, \\dots, L-1\\}` (naming the first few offending values).
        """
        if not isinstance(y, Tensor):
            raise ValueError(f"{name} must be a Tensor of levels, got {type(y).__name__}")
        expected = ", ".join(map(str, self.event_shape))
        if y.dim() != len(self.event_shape) + 1 or y.shape[1:] != self.event_shape:
            raise ValueError(
                f"{name} must have shape (N, {expected}) (the event shape given to "
                f"{type(self).__name__}), got {tuple(y.shape)}"
            )
        if y.shape[0] == 0:
            raise ValueError(f"{name} holds no data point: shape {tuple(y.shape)}")
        if y.is_complex():
            raise ValueError(f"{name} must hold integer levels, got dtype {y.dtype}")
        if y.dtype == torch.bool:
            y = y.long()
        top = self.num_levels - 1
        if y.is_floating_point():
            finite = torch.isfinite(y)
            if not bool(finite.all()):
                raise ValueError(f"{name} holds NaN or infinite values: {_listed(y[~finite])}")
            fractional = y != torch.floor(y)
            if bool(fractional.any()):
                raise ValueError(
                    f"{name} must hold integer levels in {{0, ..., {top}}}; got non-integer "
                    f"values {_listed(y[fractional])}"
                )
        outside = (y < 0) | (y > top)
        if bool(outside.any()):
            message = (
                f"{name} must hold integer levels in {{0, ..., {top}}} "
                f"(num_levels={self.num_levels}); got values {_listed(y[outside])}"
            )
            highest = y.max().item()
            if highest > top:
                message += (
                    f". num_levels={self.num_levels} is inconsistent with the data: "
                    f"max({name}) = {highest:g} needs num_levels >= {int(highest) + 1}"
                )
            raise ValueError(message)
        ref = self._reference()
        return y.to(dtype=ref.dtype, device=ref.device)

    def _noise_prior(self, like: Tensor) -> Distribution:
        zeros = like.new_zeros(self.event_shape)
        return dist.Uniform(zeros, zeros + 1).to_event(len(self.event_shape))

    def model(self, y: Tensor) -> None:
        r"""The model :math:`u \sim \mathcal{U}[0,1)^D`, :math:`w = y + u \sim p_W`, so that
        :math:`\log p(y, u) = \log p_W(y + u)`; sites ``"u"`` and ``"w"`` in the plate
        ``"data"``."""
        if self.density is not None:
            register_module(f"{self.name}.density", self.density)
        levels = self.check_data(y)
        with pyro.plate("data", levels.shape[0]):
            u = pyro.sample("u", self._noise_prior(levels))
            pyro.sample("w", self.dequantized_distribution(), obs=levels + u)

    def guide(self, y: Tensor) -> None:
        raise NotImplementedError

    # -- evaluation --------------------------------------------------------
    def extra_repr(self) -> str:
        return (
            f"num_levels={self.num_levels}, event_shape={tuple(self.event_shape)}, "
            f"preprocess={self.preprocess!r}, alpha={self.alpha}"
        )


class UniformDequantization(_Dequantization):
    r"""Uniform dequantization: the guide is the prior, :math:`q(u \mid y) = \mathcal{U}[0, 1)^D`.

    .. math:: \log P(y) \ge \mathbb{E}_{u \sim \mathcal{U}[0,1)^D}\big[\log p_W(y + u)\big],

    the classic bound (Theis et al., 2016): fitting a continuous density to
    :math:`y + u` with uniform noise maximises it. Scoring a point costs one
    density evaluation per noise draw; the guide has no parameters.

    The model is described in the module docstring: latent ``"u"`` with a
    :math:`\mathcal{U}[0,1)^D` prior, observed ``"w"`` :math:`= y + u` under the
    density pushed to the data scale, both in the plate ``"data"`` over the
    first dimension of ``y``.

    References:
        | A note on the evaluation of generative models (Theis et al., 2016)
        | https://arxiv.org/abs/1511.01844

    Arguments:
        density: The continuous density: an ``nn.Module`` whose call returns a
            distribution (a :class:`~pyro_dgm.flows.Flow`, registered with
            ``pyro.module``), or a fixed ``Distribution``. Its event shape is the
            data's event shape or a flat one with as many values (reshaped, e.g.
            ``(64,)`` for ``(1, 8, 8)`` images).
        num_levels: :math:`L`: the data take values in :math:`\{0, \dots, L-1\}`.
        event_shape: The data's event shape; the density's by default.
        preprocess: ``"logit"`` (the density lives on logits: :math:`w = L\,v(x)` with
            :class:`~pyro_dgm.transforms.logit.LogitTransform`) or ``"unit"``
            (:math:`x = w / L \in [0, 1]^D`).
        alpha: The margin of the logit pre-processing.
        name: Prefix of the parameter names in Pyro's param store.

    Example:
        >>> from pyro_dgm.flows import RealNVP
        >>> pair = UniformDequantization(RealNVP(4, num_layers=2), num_levels=17)
        >>> y = torch.randint(0, 17, (8, 4))
        >>> from pyro_dgm import infer
        >>> infer.log_likelihood(pair.model, pair.guide, y).bound
        'ELBO(particles=1)'
    """

    def guide(self, y: Tensor) -> None:
        r""":math:`u \sim \mathcal{U}[0, 1)^D` in the plate ``"data"``."""
        levels = self.check_data(y)
        with pyro.plate("data", levels.shape[0]):
            pyro.sample("u", self._noise_prior(levels))


# ---------------------------------------------------------------------------
# variational dequantization
# ---------------------------------------------------------------------------


def dequantization_noise_flow(
    input_dim: int,
    context_dim: int,
    num_layers: int = 4,
    hidden_dims: Sequence[int] | None = None,
) -> Flow:
    r"""The default conditional noise flow of :class:`VariationalDequantization`.

    From :math:`\epsilon \sim \mathcal{N}(0, I)`: the fixed map to a standard
    logistic variable :math:`\operatorname{logit}\Phi(\epsilon)`
    (:class:`~pyro_dgm.transforms.NormalToLogisticTransform`), then
    ``num_layers`` conditional affine couplings (RealNVP) whose networks see the
    context :math:`h(y)`, with half and alternating masks in turn. Every
    coupling starts as the identity (zero last layer), so the guide
    :math:`\sigma(\cdot)` of this flow starts as exactly :math:`\mathcal{U}(0,1)^D`,
    the uniform guide, and training can only move away from it by improving
    the bound. One network pass per layer to sample and to score.

    Arguments:
        input_dim: :math:`D \ge 2`, the values per data point.
        context_dim: The size of the features :math:`h(y)`.
        num_layers: The number of couplings (at least 2, so that every value is
            transformed).
        hidden_dims: Hidden sizes of each coupling network; ``[128, 128]`` by default.

    Example:
        >>> flow = dequantization_noise_flow(4, context_dim=3)
        >>> flow(torch.randn(5, 3)).sample().shape
        torch.Size([5, 4])
    """
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 2:
        raise ValueError(
            f"the default noise flow needs input_dim >= 2 (couplings split the values), got "
            f"{input_dim!r}; pass your own noise_flow for one-dimensional data"
        )
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 2:
        raise ValueError(f"num_layers must be an integer >= 2, got {num_layers!r}")
    hidden = list(hidden_dims) if hidden_dims is not None else [128, 128]
    masks = [
        half_mask(input_dim),
        half_mask(input_dim, flip=True),
        alternating_mask(input_dim),
        alternating_mask(input_dim, flip=True),
    ]
    couplings = [
        conditional_masked_affine_coupling(input_dim, context_dim, masks[i % 4], hidden)
        for i in range(num_layers)
    ]
    return Flow([NormalToLogisticTransform(cache_size=1), *couplings], event_shape=(input_dim,))


class _Scaled(nn.Module):
    """Maps levels to :math:`[-1, 1]` before a network."""

    def __init__(self, net: nn.Module, num_levels: int) -> None:
        super().__init__()
        self.net = net
        self.num_levels = num_levels

    def forward(self, y: Tensor) -> Tensor:
        return self.net(2.0 * y / (self.num_levels - 1) - 1.0)


def dequantization_features(
    event_shape: Sequence[int],
    context_dim: int = 64,
    hidden: int = 128,
    channels: int = 16,
) -> nn.Module:
    r"""The default feature network :math:`h(y)` of :class:`VariationalDequantization`.

    Images ``(C, H, W)``: two 3x3 convolutions with ``channels`` filters and ReLU,
    flattened, then a linear map to ``context_dim``. Any other event: flattened,
    then an MLP with one hidden layer of ``hidden`` units. The input is the data
    rescaled to :math:`[-1, 1]` (done by the caller).

    Example:
        >>> dequantization_features((1, 8, 8), context_dim=32)(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 32])
    """
    shape = tuple(event_shape)
    if len(shape) == 3:
        c, h, w = shape
        return nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels * h * w, context_dim),
        )
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, context_dim),
    )


class VariationalDequantization(_Dequantization):
    r"""Variational dequantization (Flow++): the guide is a conditional flow over the noise.

    .. math:: u = \sigma\big(g(\epsilon; h(y))\big), \quad \epsilon \sim \mathcal{N}(0, I),
        \qquad \log q(u \mid y) = \log \mathcal{N}(\epsilon)
        - \log\left|\det \frac{\partial g}{\partial \epsilon}\right|
        - \sum_i \log\big(\sigma(z_i)\,(1 - \sigma(z_i))\big),

    with :math:`z = g(\epsilon; h(y))` and features :math:`h(y)` of the data
    from a small network. The guide is a Pyro ``TransformedDistribution`` (the
    noise flow's normal base, its conditioned layers, then a
    ``SigmoidTransform``), so Pyro computes :math:`\log q(u \mid y)` exactly,
    the sigmoid's Jacobian included. The bound

    .. math:: \log P(y) \ge \mathbb{E}_{q(u \mid y)}\big[\log p_W(y + u) - \log q(u \mid y)\big]

    is tight when :math:`q(u \mid y) \propto p_W(y + u)` on the cell; the uniform guide
    is the special case :math:`q = \mathcal{U}[0,1)^D`. The default noise flow
    (:func:`dequantization_noise_flow`) starts exactly at that uniform guide.

    Sampling and scoring the guide cost one feature pass and one network pass
    per noise-flow layer; the density is evaluated once per noise draw, as for
    the uniform guide. The model is that of :class:`UniformDequantization`.

    References:
        | Flow++: Improving Flow-Based Generative Models with Variational Dequantization
          and Architecture Design (Ho et al., 2019)
        | https://arxiv.org/abs/1902.00275

    Arguments:
        density: The continuous density (see :class:`UniformDequantization`).
        num_levels: :math:`L`.
        event_shape: The data's event shape; the density's by default.
        preprocess: ``"logit"`` or ``"unit"`` (see :class:`UniformDequantization`).
        alpha: The margin of the logit pre-processing.
        noise_flow: A conditional :class:`~pyro_dgm.flows.Flow` over :math:`D` values
            (or the data's event shape) taking the features as context;
            :func:`dequantization_noise_flow` by default.
        features: Maps the data rescaled to :math:`[-1, 1]`, shape ``(N, *event_shape)``,
            to features ``(N, context_dim)``; :func:`dequantization_features` by default.
        context_dim: The feature size, for the default networks.
        num_layers: Couplings of the default noise flow.
        hidden_dims: Hidden sizes of the default noise flow's couplings.
        name: Prefix of the parameter names in Pyro's param store.

    Example:
        >>> from pyro_dgm.flows import RealNVP
        >>> pair = VariationalDequantization(RealNVP(4, num_layers=2), num_levels=17)
        >>> pair.noise_distribution(torch.randint(0, 17, (8, 4))).sample().shape
        torch.Size([8, 4])
    """

    def __init__(
        self,
        density: nn.Module | Distribution,
        num_levels: int,
        *,
        event_shape: Sequence[int] | None = None,
        preprocess: str = "logit",
        alpha: float = 0.05,
        noise_flow: Flow | None = None,
        features: Callable[[Tensor], Tensor] | nn.Module | None = None,
        context_dim: int = 64,
        num_layers: int = 4,
        hidden_dims: Sequence[int] | None = None,
        name: str = "dequantization",
    ) -> None:
        super().__init__(
            density,
            num_levels,
            event_shape=event_shape,
            preprocess=preprocess,
            alpha=alpha,
            name=name,
        )
        if noise_flow is None:
            noise_flow = dequantization_noise_flow(
                self.num_dims, context_dim, num_layers=num_layers, hidden_dims=hidden_dims
            )
        if not isinstance(noise_flow, nn.Module):
            raise ValueError(
                f"noise_flow must be a Flow (an nn.Module), got {type(noise_flow).__name__}"
            )
        flow_shape = torch.Size(getattr(noise_flow, "event_shape", ()))
        if flow_shape not in (torch.Size([self.num_dims]), self.event_shape):
            raise ValueError(
                f"noise_flow must have event shape ({self.num_dims},) or "
                f"{tuple(self.event_shape)}, got {tuple(flow_shape)}"
            )
        if features is None:
            features = dequantization_features(self.event_shape, context_dim)
        self.noise_flow = noise_flow
        self.features = _Scaled(features, num_levels)
        # cached, so that the guide scores its own samples exactly, without a logit
        self._squash: list[Transform] = []
        if flow_shape != self.event_shape:
            self._squash.append(ReshapeTransform(flow_shape, self.event_shape, cache_size=1))
        self._squash.append(SigmoidTransform(cache_size=1))

    def noise_distribution(self, y: Tensor) -> FlowDistribution:
        r"""The guide's :math:`q(u \mid y)`: batch shape ``(N,)``, event shape that of the data."""
        levels = self.check_data(y)
        ref = _first_float(self.noise_flow)
        if ref is not None:
            levels = levels.to(ref.dtype)
        if getattr(self.noise_flow, "is_conditional", True):
            base = self.noise_flow(self.features(levels))
        else:
            base = self.noise_flow().expand(levels.shape[:1])
        return FlowDistribution(base, self._squash)

    def guide(self, y: Tensor) -> None:
        r""":math:`u \sim q(u \mid y)` in the plate ``"data"``."""
        register_module(f"{self.name}.noise_flow", self.noise_flow)
        register_module(f"{self.name}.features", self.features)
        n = y.shape[0] if isinstance(y, Tensor) and y.dim() > 0 else 0
        q = self.noise_distribution(y)
        with pyro.plate("data", n):
            pyro.sample("u", q)


DEQUANTIZATIONS: dict[str, type[_Dequantization]] = {
    "uniform": UniformDequantization,
    "variational": VariationalDequantization,
}
