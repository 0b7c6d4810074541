r"""The multi-scale architecture of RealNVP and Glow as one bijection.

An image :math:`x` of shape :math:`(C, H, W)` is mapped to Gaussian noise in
:math:`L` levels. Each level (inference direction) runs some steps, squeezes
(:math:`2 \times 2` space to depth), runs more steps, and factors half of the
channels out: that half is a latent of the level, the other half goes on to
the next, coarser level. The last level keeps everything.

.. math:: h_0 = x, \quad (h_\ell, z_\ell) = \mathrm{split}\big(f_\ell(h_{\ell-1})\big), \quad
    \log p(x) = \log p(h_L) + \sum_\ell \log p(z_\ell \mid h_\ell)
    + \sum_\ell \log \left|\det \frac{\partial f_\ell}{\partial h_{\ell-1}}\right| .

The factored half's prior is the standard normal, or (Glow) a Gaussian whose
mean and scale a zero-initialised convolution predicts from the kept half
(:class:`SplitPrior`), :math:`z_\ell = \mu(h_\ell) + \sigma(h_\ell) \odot \epsilon_\ell`.
Written with the noise :math:`\epsilon_\ell`, the whole architecture is one
bijection from standard normal noise :math:`\epsilon` of the image's size to
:math:`x` (:class:`MultiScaleTransform`), so its distribution is a plain Pyro
``TransformedDistribution`` (the flows of :mod:`pyro_dgm.flows.image`).

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
from pyro.distributions import TransformModule, constraints
from torch import Tensor, nn
from torch.distributions import Transform

from ._bounds import soft_bound
from .image import Squeeze
from .reversible import DRIFT_TOLERANCE, MemorySavingPass

__all__ = ["MultiScaleLevel", "MultiScaleTransform", "SplitPrior"]

_SQUEEZE = Squeeze()


def _image_shape(event_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in event_shape)
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise ValueError(f"event_shape must be an image shape (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


class SplitPrior(nn.Module):
    r"""Glow's learned prior of the factored-out half of a level: a Gaussian
    whose mean and log-scale a 3x3 convolution of the kept half predicts.

    .. math:: z = \mu(h) + e^{s(h)} \odot \epsilon, \qquad
        (\mu, \tilde s) = \mathrm{conv}(h), \quad s = b \tanh(\tilde s / b) .

    The convolution starts at zero (the prior starts as the standard normal);
    the log-scale is bounded smoothly by :math:`b`
    (:func:`~pyro_dgm.transforms.soft_bound`), as in the coupling layers. One
    convolution per call.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Arguments:
        kept_channels: Channels of the kept half :math:`h`.
        out_channels: Channels of the factored half :math:`z`.
        scale_bound: The bound :math:`b` of the log-scale.

    Example:
        >>> loc, log_scale = SplitPrior(2, 2)(torch.randn(5, 2, 4, 4))
        >>> loc.shape, bool((log_scale == 0).all())  # the standard normal at first
        (torch.Size([5, 2, 4, 4]), True)
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
        return loc, soft_bound(raw, self.scale_bound)


class MultiScaleLevel(nn.Module):
    r"""One level of a multi-scale flow, in the inference direction: the ``pre``
    steps, an optional squeeze, the ``post`` steps, an optional split.

    ``pre`` and ``post`` list transforms in the *inference* order (the order the
    data meets them); each is a Pyro transform whose forward call is the
    generative direction, as everywhere in pyro_dgm, so the inference pass
    applies their inverses.

    With ``memory_saving=True`` the level's steps and its squeeze run as one
    :class:`~pyro_dgm.transforms.MemorySavingStack` does: their activations are
    rebuilt in the backward pass instead of kept, in both directions (the split and
    its prior back-propagate as usual). The parameters and their names are the same
    either way, so a state dict moves between the two, and the attribute can be
    switched on a built level.

    Arguments:
        input_shape: The shape :math:`(C, H, W)` entering the level.
        pre: Transforms on ``input_shape``, before the squeeze.
        post: Transforms on the (squeezed) shape.
        squeeze: Whether the level squeezes.
        split: Whether half of the channels leave at the end of the level.
        learned_prior: Whether the factored half gets Glow's learned
            conditional Gaussian prior (:class:`SplitPrior`) rather than the
            standard normal.
        memory_saving: Rebuild the steps' activations in the backward pass.
        drift_tolerance: With ``memory_saving``, the largest relative error of the
            rebuilt input of the level (see :class:`~pyro_dgm.transforms.MemorySavingStack`).
        on_drift: ``"raise"``, ``"warn"`` or ``"off"``.

    Example:
        >>> from pyro_dgm.transforms import ActNorm
        >>> level = MultiScaleLevel((1, 4, 4), post=[ActNorm(4, event_dim=3)])
        >>> level.inner_shape, level.output_shape, level.latent_shape
        ((4, 2, 2), (2, 2, 2), (2, 2, 2))
        >>> x = torch.randn(3, 1, 4, 4)
        >>> h, eps, log_det = level.encode(x, torch.zeros(3))  # squeeze, step, split
        >>> x_back, _ = level.decode(h, eps, torch.zeros(3))
        >>> torch.allclose(x_back, x, atol=1e-6)
        True
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
        memory_saving: bool = False,
        drift_tolerance: float = DRIFT_TOLERANCE,
        on_drift: str = "raise",
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
        # the steps and the squeeze in generative order, for a memory-saving pass
        self._generative = [
            *reversed(self.post_parts),
            *([_SQUEEZE.inv] if self.squeeze else []),
            *reversed(self.pre_parts),
        ]
        self._drift = (drift_tolerance, on_drift)
        self._stack: MemorySavingPass | None = None
        self.memory_saving = memory_saving

    @property
    def memory_saving(self) -> bool:
        """Whether the steps' activations are rebuilt in the backward pass."""
        return self._memory_saving

    @memory_saving.setter
    def memory_saving(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"memory_saving: expected True or False, got {value!r}")
        self._memory_saving = value
        self._stack = None
        if value and self._generative:
            self._stack = MemorySavingPass(self._generative, *self._drift, name="MultiScaleLevel")

    @staticmethod
    def _infer(parts: Sequence[Transform], h: Tensor, log_det: Tensor) -> tuple[Tensor, Tensor]:
        for t in parts:
            x = t._inverse(h)
            log_det = log_det + t.log_abs_det_jacobian(x, h)
            h = x
        return h, log_det

    @staticmethod
    def _generate(parts: Sequence[Transform], h: Tensor, log_det: Tensor) -> tuple[Tensor, Tensor]:
        for t in reversed(parts):
            y = t._call(h)
            log_det = log_det + t.log_abs_det_jacobian(h, y)
            h = y
        return h, log_det

    def encode(self, x: Tensor, log_det: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Inference pass: ``(h, epsilon, log_det)``, with ``h`` the part that goes
        on (``None``-free: the empty split's ``h`` is ``epsilon`` itself for the last
        level) and ``log_det`` increased by the generative log-det of this level."""
        if self._stack is not None:
            h, steps = self._stack.apply(x, None, inverse=True)
            log_det = log_det + steps
        else:
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
        if self._stack is not None:
            h, steps = self._stack.apply(h, None, inverse=False)
            return h, log_det + steps
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

    Example:
        >>> from pyro_dgm.transforms import ActNorm
        >>> first = MultiScaleLevel((1, 4, 4), post=[ActNorm(4, event_dim=3)])
        >>> last = MultiScaleLevel((2, 2, 2), squeeze=False, split=False)
        >>> t = MultiScaleTransform([first, last])
        >>> t.latent_shapes
        [torch.Size([2, 2, 2]), torch.Size([2, 2, 2])]
        >>> t(torch.randn(3, 1, 4, 4)).shape
        torch.Size([3, 1, 4, 4])
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

    @property
    def memory_saving(self) -> bool:
        """Whether every level rebuilds its steps' activations in the backward pass
        (settable: switches every level)."""
        return all(level.memory_saving for level in self.levels)

    @memory_saving.setter
    def memory_saving(self, value: bool) -> None:
        for level in self.levels:
            level.memory_saving = value

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
            raise ValueError(
                f"expected {len(self.levels)} latents, one per level, got {len(latents)}"
            )
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
        return [
            p.reshape(*p.shape[:-1], *s) for p, s in zip(parts, self.latent_shapes, strict=True)
        ]

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
