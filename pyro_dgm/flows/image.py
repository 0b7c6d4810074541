r"""Multi-scale image flows (RealNVP and Glow) as distributions over images :math:`(C, H, W)`.

Each is a :class:`~pyro_dgm.flows.Flow` around one
:class:`~pyro_dgm.transforms.MultiScaleTransform`, the bijection from standard
normal noise of the image's shape to the image that the levels of
:mod:`pyro_dgm.transforms.multiscale` compose; its distribution is a
:class:`~pyro_dgm.flows.FlowDistribution` with the whole distribution protocol.

References:
    | Density estimation using Real NVP (Dinh et al., 2017)
    | https://arxiv.org/abs/1605.08803

    | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
    | https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions import Normal
from torch import Tensor
from torch.distributions import Transform

from ..transforms.actnorm import ActNorm
from ..transforms.image import InvertibleConv1x1, conv_additive_coupling, conv_affine_coupling
from ..transforms.multiscale import MultiScaleLevel, MultiScaleTransform
from ..utils.checks import check_choice, check_int, check_shape
from .base import Flow, FlowDistribution

__all__ = ["MultiScaleFlow", "MultiScaleGlow", "MultiScaleRealNVP"]

_COUPLINGS = ("affine", "additive")


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
        transform: The :class:`~pyro_dgm.transforms.MultiScaleTransform`.

    Example:
        >>> flow = MultiScaleGlow((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8)
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
        """The :class:`~pyro_dgm.transforms.MultiScaleTransform` (registered once, as
        ``layers.0``)."""
        return self.layers[0]

    @property
    def memory_saving(self) -> bool:
        """Whether training rebuilds the steps' activations in the backward pass instead
        of keeping them (settable; see :class:`~pyro_dgm.transforms.MultiScaleLevel`)."""
        return self.transform.memory_saving

    @memory_saving.setter
    def memory_saving(self, value: bool) -> None:
        self.transform.memory_saving = value

    @property
    def latent_shapes(self) -> list[torch.Size]:
        """The shape of each level's latent, first (finest) level first."""
        return list(self.transform.latent_shapes)

    def forward(self, context: Tensor | None = None, temperature: float = 1.0) -> FlowDistribution:
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


def _preset_shape(
    event_shape: Sequence[int], num_levels: int, num_steps: int, coupling: str, num_squeezes: int
) -> tuple[int, int, int]:
    """Check a preset's arguments; return the image shape."""
    shape = tuple(check_shape(event_shape, "event_shape", ndim=3))
    check_int(num_levels, "num_levels", 1)
    check_int(num_steps, "num_steps", 1)
    check_choice(coupling, "coupling", _COUPLINGS)
    factor = 2**num_squeezes
    if shape[1] % factor or shape[2] % factor:
        raise ValueError(
            f"image shape {shape} does not fit num_levels={num_levels}: the levels squeeze "
            f"{num_squeezes} times, so H and W must be divisible by {factor}"
        )
    return shape


def _check_dropout(dropout: float, memory_saving: bool) -> None:
    if dropout and memory_saving:
        raise ValueError(
            f"dropout: expected 0 with memory_saving=True, got {dropout!r} (the memory-saving "
            "backward pass recomputes each step and would draw other dropout masks)"
        )


def _coupling(
    kind: str, shape: tuple[int, int, int], mask: str, flip: bool, **net: float
) -> Transform:
    if kind == "affine":
        return conv_affine_coupling(shape, mask, flip=flip, **net)
    return conv_additive_coupling(shape, mask, flip=flip, **net)


class MultiScaleRealNVP(MultiScaleFlow):
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
        memory_saving: Train with memory-saving backpropagation: each level's steps
            rebuild their activations in the backward pass (activation memory flat
            in ``num_steps``; see :class:`~pyro_dgm.transforms.MemorySavingStack`).
            The same parameters and the same density either way.
        dropout: Dropout probability inside the coupling networks' residual blocks
            (``train()`` mode only: the density is evaluated in ``eval()`` mode, where
            the flow is exactly invertible; refused with ``memory_saving``, whose
            backward pass would draw other masks).

    Example:
        >>> flow = MultiScaleRealNVP((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8)
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
        memory_saving: bool = False,
        dropout: float = 0.0,
    ) -> None:
        shape = _preset_shape(event_shape, num_levels, num_steps, coupling, num_levels - 1)
        _check_dropout(dropout, memory_saving)
        net = {"hidden_channels": hidden_channels, "num_blocks": num_blocks, "dropout": dropout}

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
                        shape,
                        stage(shape, "checkerboard", num_steps + 1),
                        squeeze=False,
                        split=False,
                        memory_saving=memory_saving,
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
                memory_saving=memory_saving,
            )
            levels.append(level)
            shape = level.output_shape
        super().__init__(MultiScaleTransform(levels))


class MultiScaleGlow(MultiScaleFlow):
    r"""Glow's multi-scale image flow (Kingma & Dhariwal, 2018).

    Each of the :math:`L` levels: a squeeze, ``num_steps`` steps of flow
    (:class:`~pyro_dgm.transforms.ActNorm`, an invertible 1x1 convolution
    :class:`~pyro_dgm.transforms.InvertibleConv1x1`, an affine coupling on half
    the channels), and, except at the last level, a split whose factored half has
    the learned conditional Gaussian prior (``learned_prior=True``) or the
    standard normal. The couplings' networks start at zero and the 1x1
    convolutions at random rotations, as in the paper.

    ``checkerboard_steps > 0`` puts that many couplings (of the ``coupling`` kind)
    with alternating checkerboard masks, each after an ActNorm, at full resolution
    before the first squeeze, as RealNVP's levels begin (Dinh et al., 2017). The
    paper's Glow (``0``) squeezes first, so no coupling ever sees a pixel beside its
    full-resolution neighbours; on small images (8x8 digits) that costs several
    nats, which two such couplings recover (``benchmarks/README.md``).

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
        checkerboard_steps: Checkerboard couplings at full resolution before the first
            squeeze (0: the paper's Glow).
        memory_saving: Train with memory-saving backpropagation: each level's steps
            rebuild their activations in the backward pass (activation memory flat
            in ``num_steps``; see :class:`~pyro_dgm.transforms.MemorySavingStack`).
            The same parameters and the same density either way.
        dropout: Dropout probability inside the coupling networks' residual blocks
            (``train()`` mode only: the density is evaluated in ``eval()`` mode, where
            the flow is exactly invertible; refused with ``memory_saving``, whose
            backward pass would draw other masks).

    Example:
        >>> MultiScaleGlow((1, 8, 8), num_levels=3, num_steps=1, hidden_channels=8).latent_shapes
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
        checkerboard_steps: int = 0,
        memory_saving: bool = False,
        dropout: float = 0.0,
    ) -> None:
        shape = _preset_shape(event_shape, num_levels, num_steps, coupling, num_levels)
        check_int(checkerboard_steps, "checkerboard_steps", 0)
        _check_dropout(dropout, memory_saving)
        net = {"hidden_channels": hidden_channels, "num_blocks": num_blocks, "dropout": dropout}
        levels = []
        for index in range(num_levels):
            c, h, w = shape
            inner = (4 * c, h // 2, w // 2)
            pre: list[Transform] = []
            for k in range(checkerboard_steps if index == 0 else 0):
                pre += [
                    ActNorm(c, event_dim=3),
                    _coupling(coupling, shape, "checkerboard", flip=k % 2 == 1, **net),
                ]
            steps: list[Transform] = []
            for _ in range(num_steps):
                steps += [
                    ActNorm(inner[0], event_dim=3),
                    InvertibleConv1x1(inner[0], parametrization),
                    _coupling(coupling, inner, "channel", flip=False, **net),
                ]
            split = index < num_levels - 1
            level = MultiScaleLevel(
                shape,
                pre,
                steps,
                squeeze=True,
                split=split,
                learned_prior=learned_prior and split,
                memory_saving=memory_saving,
            )
            levels.append(level)
            shape = level.output_shape
        super().__init__(MultiScaleTransform(levels))
