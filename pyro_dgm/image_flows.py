r"""Image flows in the multi-scale architecture of RealNVP and Glow.

An image :math:`x` of shape :math:`(C, H, W)` is mapped to Gaussian noise in
:math:`L` levels. Each level (inference direction) runs some steps, squeezes
(:math:`2 \times 2` space to depth), runs more steps, and factors half of the
channels out: that half is a latent of the level, the other half goes on to
the next, coarser level. The last level keeps everything.

.. math:: h_0 = x, \quad (h_\ell, z_\ell) = \mathrm{split}\big(f_\ell(h_{\ell-1})\big), \quad
    \log p(x) = \log p(h_L) + \sum_\ell \log p(z_\ell \mid h_\ell)
    + \sum_\ell \log \left|\det \frac{\partial f_\ell}{\partial h_{\ell-1}}\right| .

The factored half's prior is the standard normal, or (Glow) a Gaussian whose
mean and scale a zero-initialised convolution predicts from the kept half,
:math:`z_\ell = \mu(h_\ell) + \sigma(h_\ell) \odot \epsilon_\ell`. Written with
the noise :math:`\epsilon_\ell`, the whole architecture is one bijection from
standard normal noise :math:`\epsilon` of the image's size to :math:`x`
(:class:`MultiScaleTransform`), so the distribution is a plain Pyro
``TransformedDistribution`` and has the whole distribution protocol.

References:
    | Density estimation using Real NVP (Dinh et al., 2017)
    | https://arxiv.org/abs/1605.08803

    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
    | https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from pyro.distributions import Normal, TransformModule, constraints
from torch import Tensor, nn
from torch.distributions import Transform

from .flows import Flow, FlowDistribution
from .transforms.actnorm import ActNorm
from .transforms.image import (
    InvertibleConv1x1,
    Squeeze,
    conv_additive_coupling,
    conv_affine_coupling,
)

__all__ = [
    "Glow",
    "MultiScaleFlow",
    "MultiScaleLevel",
    "MultiScaleTransform",
    "RealNVP",
    "SplitPrior",
]

_SQUEEZE = Squeeze()
_COUPLINGS = ("affine", "additive")


def _image_shape(event_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in event_shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ValueError(f"event_shape must be an image shape (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def _soft_bound(raw: Tensor, bound: float) -> Tensor:
    return bound * torch.tanh(raw / bound)


class SplitPrior(nn.Module):
    r"""Glow's learned prior of the factored-out half of a level: a Gaussian
    whose mean and log-scale a 3x3 convolution of the kept half predicts.

    .. math:: z = \mu(h) + e^{s(h)} \odot \epsilon, \qquad
        (\mu, \tilde s) = \mathrm{conv}(h), \quad s = b \tanh(\tilde s / b) .

    The convolution starts at zero (the prior starts as the standard normal);
    the log-scale is bounded smoothly by :math:`b` as in the coupling layers.

    Arguments:
        kept_channels: Channels of the kept half :math:`h`.
        out_channels: Channels of the factored half :math:`z`.
        scale_bound: The bound :math:`b` of the log-scale.
    """

    def __init__(self, kept_channels: int, out_channels: int, scale_bound: float = 5.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(kept_channels, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.scale_bound = float(scale_bound)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc, log_scale)`` of the factored half, given the kept half ``h``."""
        batch = h.shape[:-3]
        out = self.conv(h.reshape(-1, *h.shape[-3:]))
        out = out.reshape(*batch, *out.shape[-3:])
        loc, raw = out.chunk(2, dim=-3)
        return loc, _soft_bound(raw, self.scale_bound)


class MultiScaleLevel(nn.Module):
    r"""One level of a multi-scale flow, in the inference direction: the ``pre``
    steps, an optional squeeze, the ``post`` steps, an optional split.

    ``pre`` and ``post`` list transforms in the *inference* order (the order the
    data meets them); each is a Pyro transform whose forward call is the
    generative direction, as everywhere in pyro_dgm, so the inference pass
    applies their inverses.

    Arguments:
        input_shape: The shape :math:`(C, H, W)` entering the level.
        pre: Transforms on ``input_shape``, before the squeeze.
        post: Transforms on the (squeezed) shape.
        squeeze: Whether the level squeezes.
        split: Whether half of the channels leave at the end of the level.
        learned_prior: Whether the factored half gets Glow's learned
            conditional Gaussian prior (:class:`SplitPrior`) rather than the
            standard normal.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        pre: Sequence[Transform] = (),
        post: Sequence[Transform] = (),
        *,
        squeeze: bool = True,
        split: bool = True,
        learned_prior: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = self.input_shape = _image_shape(input_shape)
        if squeeze:
            if h % 2 or w % 2:
                raise ValueError(f"a squeezing level needs even H and W, got shape {(c, h, w)}")
            c, h, w = 4 * c, h // 2, w // 2
        self.inner_shape = (c, h, w)
        if split and c < 2:
            raise ValueError(f"a splitting level needs at least 2 channels, got shape {(c, h, w)}")
        self.squeeze, self.split = bool(squeeze), bool(split)
        self.pre_parts = list(pre)
        self.post_parts = list(post)
        # the modules among the parts, so that their parameters belong to this level
        self.steps = nn.ModuleList(
            [p for p in [*self.pre_parts, *self.post_parts] if isinstance(p, nn.Module)]
        )
        kept = c - c // 2
        self.output_shape = (kept, h, w) if split else (c, h, w)
        self.latent_shape = (c // 2, h, w) if split else (c, h, w)
        self.prior = SplitPrior(kept, c // 2) if split and learned_prior else None

    @staticmethod
    def _infer(parts: Sequence[Transform], h: Tensor, log_det: Tensor) -> tuple[Tensor, Tensor]:
        for t in parts:
            x = t._inverse(h)
            log_det = log_det + t.log_abs_det_jacobian(x, h)
            h = x
        return h, log_det

    @staticmethod
    def _generate(
        parts: Sequence[Transform], h: Tensor, log_det: Tensor
    ) -> tuple[Tensor, Tensor]:
        for t in reversed(parts):
            y = t._call(h)
            log_det = log_det + t.log_abs_det_jacobian(h, y)
            h = y
        return h, log_det

    def encode(self, x: Tensor, log_det: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Inference pass: ``(h, epsilon, log_det)``, with ``h`` the part that goes
        on (``None``-free: the empty split's ``h`` is ``epsilon`` itself for the last
        level) and ``log_det`` increased by the generative log-det of this level."""
        h, log_det = self._infer(self.pre_parts, x, log_det)
        if self.squeeze:
            h = _SQUEEZE._call(h)
        h, log_det = self._infer(self.post_parts, h, log_det)
        if not self.split:
            return h, h, log_det
        kept = self.output_shape[0]
        h, z = h[..., :kept, :, :], h[..., kept:, :, :]
        if self.prior is None:
            return h, z, log_det
        loc, log_scale = self.prior(h)
        eps = (z - loc) * torch.exp(-log_scale)
        return h, eps, log_det + log_scale.sum(dim=(-3, -2, -1))

    def decode(self, h: Tensor, eps: Tensor, log_det: Tensor) -> tuple[Tensor, Tensor]:
        """Generative pass: the level's input from the kept part ``h`` and its noise."""
        if self.split:
            if self.prior is None:
                z = eps
            else:
                loc, log_scale = self.prior(h)
                z = loc + torch.exp(log_scale) * eps
                log_det = log_det + log_scale.sum(dim=(-3, -2, -1))
            h = torch.cat([h, z], dim=-3)
        else:
            h = eps
        h, log_det = self._generate(self.post_parts, h, log_det)
        if self.squeeze:
            h = _SQUEEZE._inverse(h)
        return self._generate(self.pre_parts, h, log_det)


class MultiScaleTransform(TransformModule):
    r"""The bijection :math:`x = g(\epsilon)` of a multi-scale flow, from standard
    normal noise :math:`\epsilon` of the image's shape to the image.

    The inverse (inference direction) runs the levels and collects each level's
    latent noise :math:`\epsilon_\ell` (the factored half, standardised by the
    learned prior if any) and the last level's output; :math:`\epsilon` is their
    concatenation (each flattened, in level order) reshaped to the image's shape.
    The log-det is the sum of every step's log-det and of the learned priors'
    log-scales. One pass each way (the steps' own costs); the log-det of a pass
    is kept with its ``(epsilon, x)`` pair and reused by
    ``log_abs_det_jacobian``.

    Arguments:
        levels: The levels, first (finest) to last; the input shape of each must
            be the output shape of the one before.
    """

    bijective = True
    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    def __init__(self, levels: Sequence[MultiScaleLevel]) -> None:
        super().__init__(cache_size=1)
        if len(levels) == 0:
            raise ValueError("a multi-scale transform needs at least one level")
        for before, after in itertools.pairwise(levels):
            if before.output_shape != after.input_shape:
                raise ValueError(
                    f"a level's input shape {after.input_shape} does not match the output "
                    f"shape {before.output_shape} of the level before"
                )
            if not before.split:
                raise ValueError("only the last level may keep all its channels (split=False)")
        if levels[-1].split:
            raise ValueError("the last level must not split: its whole output is a latent")
        self.levels = nn.ModuleList(levels)
        self.event_shape = torch.Size(levels[0].input_shape)
        self.latent_shapes = [torch.Size(level.latent_shape) for level in levels]
        self._sizes = [math.prod(s) for s in self.latent_shapes]
        if sum(self._sizes) != math.prod(self.event_shape):  # a defect of a level class
            raise ValueError(
                f"the latents {self.latent_shapes} do not add up to the event {self.event_shape}"
            )
        self._cached_log_det: tuple[Tensor, Tensor, Tensor] | None = None

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() < 3 or x.shape[-3:] != self.event_shape:
            raise ValueError(
                f"{name} must have shape batch + {tuple(self.event_shape)}, got {tuple(x.shape)}"
            )

    def encode(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """The per-level noises of images ``x`` and the generative log-det."""
        self._check(x, "x")
        log_det = x.new_zeros(x.shape[:-3])
        latents, h = [], x
        for level in self.levels:
            h, eps, log_det = level.encode(h, log_det)
            latents.append(eps)
        return latents, log_det

    def decode(self, latents: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Images from per-level noises, and the generative log-det."""
        if len(latents) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} latents, one per level, got {len(latents)}")
        for i, (eps, shape) in enumerate(zip(latents, self.latent_shapes, strict=True)):
            if eps.dim() < 3 or eps.shape[-3:] != shape:
                raise ValueError(
                    f"latent {i} must have shape batch + {tuple(shape)}, got {tuple(eps.shape)}"
                )
        batch = torch.broadcast_shapes(*(eps.shape[:-3] for eps in latents))
        latents = [eps.expand(*batch, *eps.shape[-3:]) for eps in latents]
        log_det = latents[0].new_zeros(batch)
        h = latents[-1]
        for level, eps in zip(reversed(self.levels), reversed(latents), strict=True):
            h, log_det = level.decode(h, eps, log_det)
        return h, log_det

    def pack(self, latents: Sequence[Tensor]) -> Tensor:
        """Per-level noises to one tensor of the image's shape."""
        flat = torch.cat([eps.flatten(-3) for eps in latents], dim=-1)
        return flat.reshape(*flat.shape[:-1], *self.event_shape)

    def unpack(self, eps: Tensor) -> list[Tensor]:
        """One noise tensor of the image's shape to the per-level noises."""
        parts = eps.flatten(-3).split(self._sizes, dim=-1)
        return [p.reshape(*p.shape[:-1], *s) for p, s in zip(parts, self.latent_shapes, strict=True)]

    def _call(self, eps: Tensor) -> Tensor:
        self._check(eps, "epsilon")
        x, log_det = self.decode(self.unpack(eps))
        self._cached_log_det = (eps, x, log_det)
        return x

    def _inverse(self, x: Tensor) -> Tensor:
        latents, log_det = self.encode(x)
        eps = self.pack(latents)
        self._cached_log_det = (eps, x, log_det)
        return eps

    def log_abs_det_jacobian(self, eps: Tensor, x: Tensor) -> Tensor:
        cached = self._cached_log_det
        if cached is not None and cached[0] is eps and cached[1] is x:
            return cached[2]
        return self.encode(x)[1]


class MultiScaleFlow(Flow):
    r"""A multi-scale image flow as a distribution: ``flow()`` returns the Pyro
    distribution of images, ``flow(temperature=T)`` the same flow with base noise
    :math:`\mathcal{N}(0, T^2 I)` (Glow's reduced-temperature sampling).

    ``log_prob`` runs the inference pass once and sums every level's terms;
    ``sample`` runs the generative pass once (one network pass per step, no
    sequential loop). :meth:`encode` and :meth:`decode` give the per-level
    latents, for latent interpolation between images. It is a
    :class:`~pyro_dgm.flows.Flow`, so it plugs into
    :class:`~pyro_dgm.models.FlowModel` and the dequantization pairs unchanged.

    Arguments:
        transform: The :class:`MultiScaleTransform`.

    Example:
        >>> flow = Glow((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8)
        >>> x = flow().sample((3,))
        >>> x.shape, flow().log_prob(x).shape
        (torch.Size([3, 1, 8, 8]), torch.Size([3]))
        >>> [tuple(z.shape) for z in flow.encode(x)]
        [(3, 2, 4, 4), (3, 8, 2, 2)]
    """

    def __init__(self, transform: MultiScaleTransform) -> None:
        super().__init__([transform], transform.event_shape)

    @property
    def transform(self) -> MultiScaleTransform:
        """The :class:`MultiScaleTransform` (registered once, as ``layers.0``)."""
        return self.layers[0]

    @property
    def latent_shapes(self) -> list[torch.Size]:
        """The shape of each level's latent, first (finest) level first."""
        return list(self.transform.latent_shapes)

    def forward(
        self, context: Tensor | None = None, temperature: float = 1.0
    ) -> FlowDistribution:
        if context is not None:
            raise ValueError(f"{type(self).__name__} takes no context, got one")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        d = super().forward()
        if temperature == 1.0:
            return d
        base = Normal(self.base_loc, self.base_scale * temperature).to_event(3)
        return FlowDistribution(base, d.transforms)

    @torch.no_grad()
    def sample(self, num_samples: int, temperature: float = 1.0) -> Tensor:
        """``num_samples`` images at a temperature (no gradient)."""
        return self(temperature=temperature).sample((num_samples,))

    def encode(self, x: Tensor) -> list[Tensor]:
        """The per-level latent noises :math:`\\epsilon_\\ell` of images ``x``."""
        return self.transform.encode(x)[0]

    def decode(self, latents: Sequence[Tensor]) -> Tensor:
        """Images from per-level latent noises (the inverse of :meth:`encode`)."""
        return self.transform.decode(latents)[0]


def _check_count(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _preset_shape(
    event_shape: Sequence[int], num_levels: int, num_steps: int, coupling: str, num_squeezes: int
) -> tuple[int, int, int]:
    """Check a preset's arguments; return the image shape."""
    shape = _image_shape(event_shape)
    _check_count(num_levels, "num_levels")
    _check_count(num_steps, "num_steps")
    if coupling not in _COUPLINGS:
        raise ValueError(f"coupling must be one of {_COUPLINGS}, got {coupling!r}")
    factor = 2**num_squeezes
    if shape[1] % factor or shape[2] % factor:
        raise ValueError(
            f"image shape {shape} does not fit num_levels={num_levels}: the levels squeeze "
            f"{num_squeezes} times, so H and W must be divisible by {factor}"
        )
    return shape


def _coupling(kind: str, shape: tuple[int, int, int], mask: str, flip: bool, **net: int) -> Transform:
    if kind == "affine":
        return conv_affine_coupling(shape, mask, flip=flip, **net)
    return conv_additive_coupling(shape, mask, flip=flip, **net)


class RealNVP(MultiScaleFlow):
    r"""RealNVP's multi-scale image flow (Dinh et al., 2017, section 3.6).

    Each level but the last: ``num_steps`` couplings with alternating
    checkerboard masks, a squeeze, ``num_steps`` couplings with alternating
    channel masks, and a split that factors half of the channels out. The last
    level: ``num_steps + 1`` checkerboard couplings (the paper's 3, 3 and 4).
    The couplings are affine (or additive, NICE) with convolutional residual
    hypernets that start at zero, so the flow starts as the identity. An
    :class:`~pyro_dgm.transforms.ActNorm` before each coupling (``actnorm=True``)
    stands in for the paper's batch normalisation, which would make an image's
    density depend on its batch.

    The levels squeeze ``num_levels - 1`` times: ``H`` and ``W`` must be
    divisible by :math:`2^{L-1}`.

    Arguments:
        event_shape: The image shape :math:`(C, H, W)`.
        num_levels: The number of levels :math:`L`.
        num_steps: Couplings per stage.
        hidden_channels: Width of the coupling networks.
        num_blocks: Residual blocks per coupling network.
        coupling: ``"affine"`` (RealNVP) or ``"additive"`` (NICE).
        actnorm: Put an ActNorm before each coupling.
        learned_prior: Glow's learned conditional prior on the factored halves.

    Example:
        >>> flow = RealNVP((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8)
        >>> flow().log_prob(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        num_levels: int = 2,
        num_steps: int = 3,
        hidden_channels: int = 64,
        num_blocks: int = 2,
        *,
        coupling: str = "affine",
        actnorm: bool = True,
        learned_prior: bool = False,
    ) -> None:
        shape = _preset_shape(event_shape, num_levels, num_steps, coupling, num_levels - 1)
        net = {"hidden_channels": hidden_channels, "num_blocks": num_blocks}

        def stage(s: tuple[int, int, int], mask: str, count: int) -> list[Transform]:
            parts: list[Transform] = []
            for k in range(count):
                if actnorm:
                    parts.append(ActNorm(s[0], event_dim=3))
                parts.append(_coupling(coupling, s, mask, flip=k % 2 == 1, **net))
            return parts

        levels = []
        for index in range(num_levels):
            last = index == num_levels - 1
            if last:
                levels.append(
                    MultiScaleLevel(
                        shape, stage(shape, "checkerboard", num_steps + 1), squeeze=False, split=False
                    )
                )
                break
            c, h, w = shape
            level = MultiScaleLevel(
                shape,
                stage(shape, "checkerboard", num_steps),
                stage((4 * c, h // 2, w // 2), "channel", num_steps),
                squeeze=True,
                split=True,
                learned_prior=learned_prior,
            )
            levels.append(level)
            shape = level.output_shape
        super().__init__(MultiScaleTransform(levels))


class Glow(MultiScaleFlow):
    r"""Glow's multi-scale image flow (Kingma & Dhariwal, 2018).

    Each of the :math:`L` levels: a squeeze, ``num_steps`` steps of flow
    (:class:`~pyro_dgm.transforms.ActNorm`, an invertible 1x1 convolution
    :class:`~pyro_dgm.transforms.InvertibleConv1x1`, an affine coupling on half
    the channels), and, except at the last level, a split whose factored half has
    the learned conditional Gaussian prior (``learned_prior=True``) or the
    standard normal. The couplings' networks start at zero and the 1x1
    convolutions at random rotations, as in the paper.

    The levels squeeze :math:`L` times: ``H`` and ``W`` must be divisible by
    :math:`2^L`.

    Arguments:
        event_shape: The image shape :math:`(C, H, W)`.
        num_levels: The number of levels :math:`L`.
        num_steps: Steps of flow per level :math:`K`.
        hidden_channels: Width of the coupling networks.
        num_blocks: Residual blocks per coupling network.
        parametrization: ``"lu"`` or ``"qr"`` for the 1x1 convolutions.
        coupling: ``"affine"`` or ``"additive"``.
        learned_prior: The learned conditional prior on the factored halves.

    Example:
        >>> Glow((1, 8, 8), num_levels=3, num_steps=1, hidden_channels=8).latent_shapes
        [torch.Size([2, 4, 4]), torch.Size([4, 2, 2]), torch.Size([16, 1, 1])]
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        num_levels: int = 2,
        num_steps: int = 4,
        hidden_channels: int = 64,
        num_blocks: int = 1,
        *,
        parametrization: str = "lu",
        coupling: str = "affine",
        learned_prior: bool = True,
    ) -> None:
        shape = _preset_shape(event_shape, num_levels, num_steps, coupling, num_levels)
        net = {"hidden_channels": hidden_channels, "num_blocks": num_blocks}
        levels = []
        for index in range(num_levels):
            c, h, w = shape
            inner = (4 * c, h // 2, w // 2)
            steps: list[Transform] = []
            for _ in range(num_steps):
                steps += [
                    ActNorm(inner[0], event_dim=3),
                    InvertibleConv1x1(inner[0], parametrization),
                    _coupling(coupling, inner, "channel", flip=False, **net),
                ]
            split = index < num_levels - 1
            level = MultiScaleLevel(
                shape, (), steps, squeeze=True, split=split, learned_prior=learned_prior and split
            )
            levels.append(level)
            shape = level.output_shape
        super().__init__(MultiScaleTransform(levels))
