r"""Masked coupling layers (RealNVP affine, NICE additive) for events of any rank.

A coupling layer splits the event by a binary mask :math:`m`: the entries with
:math:`m = 1` pass through unchanged and parametrise, through a network
("hypernet"), an invertible map of the entries with :math:`m = 0`. Pyro's
``AffineCoupling`` splits a vector at an index; a mask also expresses the
alternating, random, checkerboard and channel splits of RealNVP and Glow, for
vectors :math:`(D,)` and images :math:`(C, H, W)` alike (``event_dim`` is
``mask.dim()``).

The hypernet sees the masked input :math:`x \odot m` (same shape as the event)
and returns parameters of the event's shape; the entries at :math:`m = 1` are
ignored. Helpers build a dense network for vector events
(:class:`~pyro_dgm.nn.CouplingMLP`, with a zero last layer, so every coupling
starts as the identity); image hypernets (convolutions) are passed to the
classes directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.distributions import ConditionalTransformModule, TransformModule, constraints
from torch import Tensor

from ..nn.dense import CouplingMLP
from ._bounds import soft_bound
from ._context import BoundContext, bind_context
from ._events import real_event

__all__ = [
    "AdditiveCoupling",
    "ConditionalAdditiveCoupling",
    "ConditionalMaskedAffineCoupling",
    "MaskedAffineCoupling",
    "additive_coupling",
    "alternating_mask",
    "channel_half_mask",
    "checkerboard_mask",
    "conditional_additive_coupling",
    "conditional_masked_affine_coupling",
    "half_mask",
    "masked_affine_coupling",
    "random_mask",
]

# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------


#: Where the bound context of conditioned couplings lived (pickles name it), for one release.
_BoundContext = BoundContext


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def half_mask(dim: int, flip: bool = False) -> Tensor:
    r"""The first ``dim // 2`` entries kept (ones), the rest transformed (zeros).

    This is the split of Pyro's ``AffineCoupling`` with ``split_dim = dim // 2``;
    ``flip=True`` returns the complement.

    Example:
        >>> half_mask(5)
        tensor([ True,  True, False, False, False])
    """
    _check_positive_int(dim, "dim", minimum=2)
    mask = torch.arange(dim) < dim // 2
    return ~mask if flip else mask


def alternating_mask(dim: int, flip: bool = False) -> Tensor:
    r"""Ones at even indices, zeros at odd ones (the complement if ``flip``).

    Example:
        >>> alternating_mask(5, flip=True)
        tensor([False,  True, False,  True, False])
    """
    _check_positive_int(dim, "dim", minimum=2)
    mask = torch.arange(dim) % 2 == 0
    return ~mask if flip else mask


def random_mask(dim: int, generator: torch.Generator | None = None) -> Tensor:
    r"""A random mask with exactly ``dim // 2`` ones.

    Example:
        >>> int(random_mask(6, torch.Generator().manual_seed(0)).sum())
        3
    """
    _check_positive_int(dim, "dim", minimum=2)
    return torch.randperm(dim, generator=generator) < dim // 2


def checkerboard_mask(height: int, width: int, channels: int = 1, flip: bool = False) -> Tensor:
    r"""The checkerboard mask of RealNVP, of shape ``(channels, height, width)``.

    .. math:: m_{c,i,j} = 1 \iff i + j \text{ is even} .

    Example:
        >>> checkerboard_mask(2, 3).int()
        tensor([[[1, 0, 1],
                 [0, 1, 0]]], dtype=torch.int32)
    """
    _check_positive_int(height, "height")
    _check_positive_int(width, "width")
    _check_positive_int(channels, "channels")
    if height * width < 2:
        raise ValueError(
            f"checkerboard_mask needs height * width >= 2, got {height} x {width}: "
            "a single pixel cannot be split"
        )
    i = torch.arange(height)[:, None]
    j = torch.arange(width)[None, :]
    mask = ((i + j) % 2 == 0).expand(channels, height, width).clone()
    return ~mask if flip else mask


def channel_half_mask(channels: int, height: int, width: int, flip: bool = False) -> Tensor:
    r"""The channel mask of RealNVP: the first ``channels // 2`` channels kept, of
    shape ``(channels, height, width)``.

    .. math:: m_{c,i,j} = 1 \iff c < \lfloor C / 2 \rfloor .

    (Not :func:`pyro_dgm.nn.masked_conv.channel_mask`, the connectivity of a masked
    convolution's channels.)

    Example:
        >>> channel_half_mask(3, 1, 2).int()
        tensor([[[1, 1]],
        <BLANKLINE>
                [[0, 0]],
        <BLANKLINE>
                [[0, 0]]], dtype=torch.int32)
    """
    _check_positive_int(channels, "channels", minimum=2)
    _check_positive_int(height, "height")
    _check_positive_int(width, "width")
    mask = (torch.arange(channels) < channels // 2)[:, None, None].expand(channels, height, width)
    mask = mask.clone()
    return ~mask if flip else mask


#: The former name of :func:`channel_half_mask`, kept for one release.
channel_mask = channel_half_mask


def _validated_mask(mask: Tensor) -> Tensor:
    """Check that ``mask`` is a binary tensor with both values; return it as floats.

    Boolean and integer masks become the default floating dtype (as parameters
    do); floating masks keep their dtype (so a module moved by ``.double()``
    conditions into a float64 transform).
    """
    mask = torch.as_tensor(mask)
    if mask.dim() == 0:
        raise ValueError("mask must have the event shape (at least one dimension), got a scalar")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(
            f"mask must be binary (0/1 or bool), got values {mask.unique().tolist()[:6]}"
        )
    kept = mask.bool()
    if bool(kept.all()):
        raise ValueError("mask is all ones: the coupling would transform nothing")
    if not bool(kept.any()):
        raise ValueError(
            "mask is all zeros: the hypernet would see no input and the coupling "
            "would be a constant map of the whole event"
        )
    if not mask.is_floating_point():
        mask = mask.to(torch.get_default_dtype())
    return mask


def _check_event(x: Tensor, mask: Tensor, name: str) -> None:
    event_shape = mask.shape
    if x.dim() < len(event_shape) or x.shape[x.dim() - len(event_shape) :] != event_shape:
        raise ValueError(
            f"{name} must end with the event shape {tuple(event_shape)} of the mask, "
            f"got shape {tuple(x.shape)}"
        )


def _check_params(param: Tensor, mask: Tensor, what: str) -> None:
    if not isinstance(param, Tensor):  # a defect of the hypernet, not of the data
        raise TypeError(f"the hypernet must return tensors, got {type(param).__name__} ({what})")
    _check_event(param, mask, f"the hypernet's {what}")


def _sum_event(s: Tensor, event_dim: int) -> Tensor:
    return s.sum(dim=tuple(range(-event_dim, 0)))


# ---------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------


def _checked_scale_bound(scale_bound: float) -> float:
    if (
        isinstance(scale_bound, bool)
        or not isinstance(scale_bound, (int, float))
        or not 0 < scale_bound < float("inf")
    ):
        raise ValueError(f"scale_bound must be a positive finite number, got {scale_bound!r}")
    return float(scale_bound)


class _MaskedCoupling(TransformModule):
    """What both coupling layers share: the mask buffer, the event constraints, the
    input checks, and construction around an already validated mask."""

    bijective = True

    def __init__(self, mask: Tensor, hypernet: Callable[..., object], **kwargs: object) -> None:
        super().__init__(cache_size=1)
        self._setup(_validated_mask(mask), hypernet, **kwargs)

    def _setup(self, mask: Tensor, hypernet: Callable[..., object]) -> None:
        self.register_buffer("mask", mask)
        self.hypernet = hypernet
        self._event_constraint = real_event(mask.dim())

    @classmethod
    def _from_validated(
        cls, mask: Tensor, hypernet: Callable[..., object], **kwargs: object
    ) -> _MaskedCoupling:
        # condition() runs every step: skip the value checks of the mask (a device
        # sync each on a GPU), which the conditional module did once at construction
        t = cls.__new__(cls)
        TransformModule.__init__(t, cache_size=1)
        t._setup(mask, hypernet, **kwargs)
        return t

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._event_constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._event_constraint


class _ConditionalMaskedCoupling(ConditionalTransformModule):
    """The conditional twins' shared part: mask buffer, constraints, hypernet."""

    bijective = True

    def __init__(self, mask: Tensor, hypernet: Callable[..., object]) -> None:
        super().__init__()
        self.register_buffer("mask", _validated_mask(mask))
        self.hypernet = hypernet
        self._event_constraint = real_event(self.mask.dim())

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._event_constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._event_constraint


# ---------------------------------------------------------------------------
# affine coupling (RealNVP)
# ---------------------------------------------------------------------------


class MaskedAffineCoupling(_MaskedCoupling):
    r"""The affine coupling layer of RealNVP, with a binary mask over an event of
    any rank.

    .. math:: y = m \odot x + (1 - m) \odot \left(x \odot e^{s} + t\right), \quad
        (t, \tilde s) = \mathrm{NN}(m \odot x), \quad
        s = (1 - m) \odot b \tanh(\tilde s / b),

    with :math:`\log |\det J| = \sum s` over the event. Sampling (the forward call)
    and scoring (the inverse, :math:`x = m \odot y + (1 - m) \odot (y - t)\,e^{-s}`
    with :math:`(t, \tilde s) = \mathrm{NN}(m \odot y)`) each cost one network pass;
    ``log_prob`` reuses the log-scale of that pass (Pyro's caching), so scoring data
    is one pass too.

    The log-scale is bounded smoothly by :math:`b \tanh(\tilde s / b)` (a soft
    clamp): it is infinitely differentiable, has slope 1 at zero (a zero-initialised
    network gives exactly the identity, and small outputs act as a plain log-scale),
    is symmetric (unlike Glow's :math:`\mathrm{sigmoid}(\tilde s + 2)`, which can
    only contract), and keeps each layer's scale in :math:`(e^{-b}, e^{b})`, so deep
    stacks neither overflow nor lose their float32 round trip. Unlike a hard clamp,
    its gradient is never cut off and is the gradient of the function computed.

    Arguments:
        mask: A binary tensor of the event shape (``(D,)``, ``(C, H, W)``, ...); ones
            mark the entries that pass through and feed the hypernet.
        hypernet: Maps ``x * mask`` (shape ``batch + mask.shape``) to a tuple
            ``(shift, raw_scale)``, each of shape ``batch + mask.shape`` (entries
            at ``mask == 1`` are ignored).
        scale_bound: The bound :math:`b > 0` of the log-scale.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017)
        | https://arxiv.org/abs/1605.08803

        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> import pyro.distributions as dist
        >>> t = masked_affine_coupling(4, mask=alternating_mask(4))
        >>> base = dist.Normal(torch.zeros(4), 1.0).to_event(1)
        >>> dist.TransformedDistribution(base, [t]).log_prob(torch.randn(10, 4)).shape
        torch.Size([10])
    """

    def __init__(
        self,
        mask: Tensor,
        hypernet: Callable[[Tensor], tuple[Tensor, Tensor]],
        *,
        scale_bound: float = 2.0,
    ) -> None:
        super().__init__(mask, hypernet, scale_bound=_checked_scale_bound(scale_bound))

    def _setup(
        self,
        mask: Tensor,
        hypernet: Callable[[Tensor], tuple[Tensor, Tensor]],
        scale_bound: float,
    ) -> None:
        super()._setup(mask, hypernet)
        self.scale_bound = scale_bound
        self._cached_log_scale: tuple[Tensor, Tensor, Tensor] | None = None

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.mask.shape)}, scale_bound={self.scale_bound}"

    def _shift_and_log_scale(self, x_masked: Tensor) -> tuple[Tensor, Tensor]:
        out = self.hypernet(x_masked)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError(
                "the hypernet of MaskedAffineCoupling must return a tuple (shift, raw_scale), "
                f"got {type(out).__name__}"
            )
        shift, raw = out
        _check_params(shift, self.mask, "shift")
        _check_params(raw, self.mask, "raw_scale")
        free = 1 - self.mask
        return free * shift, free * soft_bound(raw, self.scale_bound)

    def _call(self, x: Tensor) -> Tensor:
        _check_event(x, self.mask, "x")
        shift, log_scale = self._shift_and_log_scale(x * self.mask)
        # kept entries have log_scale = shift = 0 exactly, so y = x there bit for bit
        y = x * torch.exp(log_scale) + shift
        self._cached_log_scale = (x, y, log_scale)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        _check_event(y, self.mask, "y")
        shift, log_scale = self._shift_and_log_scale(y * self.mask)
        x = (y - shift) * torch.exp(-log_scale)
        self._cached_log_scale = (x, y, log_scale)
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        # the log-scale of the last pass is reused only for that very (x, y) pair,
        # whichever way it was computed (cached call or a direct _call/_inverse)
        cached = self._cached_log_scale
        if cached is not None and cached[0] is x and cached[1] is y:
            log_scale = cached[2]
        else:
            _check_event(x, self.mask, "x")
            _, log_scale = self._shift_and_log_scale(x * self.mask)
        return _sum_event(log_scale, self.mask.dim())

    def _memory_saving_backward(
        self,
        out: Tensor,
        grad_out: Tensor,
        grad_log_det: Tensor,
        leaves: Sequence[Tensor],
        inverse: bool,
    ) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
        r"""The backward step of a memory-saving stack (RevNet's algorithm for a coupling).

        The hypernet's input :math:`m \odot x = m \odot y` is known from the output
        alone, so one recorded hypernet pass both rebuilds the input and gives the
        gradients. ``inverse``: ``out`` is :math:`x` (the step was the inverse), else
        :math:`y`. Returns the rebuilt input, its gradient and those of ``leaves``.
        """
        out = out.detach()
        kept = (out * self.mask).requires_grad_()
        shift, log_scale = self._shift_and_log_scale(kept)
        k = self.mask.dim()
        grad_l = grad_log_det.reshape(*grad_log_det.shape, *(1,) * k)
        with torch.no_grad():
            if inverse:  # out = x = (y - t) e^{-s}; rebuild y = x e^{s} + t
                scale = torch.exp(-log_scale)
                rebuilt = out * torch.exp(log_scale) + shift
                grad_direct = grad_out * scale
                grad_shift = -grad_direct
                grad_log_scale = -grad_out * out + grad_l
            else:  # out = y = x e^{s} + t; rebuild x = (y - t) e^{-s}
                scale = torch.exp(log_scale)
                rebuilt = (out - shift) * torch.exp(-log_scale)
                grad_direct = grad_out * scale
                grad_shift = grad_out
                grad_log_scale = grad_out * (out - shift) + grad_l
        grad_kept, *leaf_grads = torch.autograd.grad(
            [shift, log_scale],
            [kept, *leaves],
            [grad_shift, grad_log_scale.expand_as(log_scale)],
            allow_unused=True,
        )
        grad_in = grad_direct if grad_kept is None else grad_direct + self.mask * grad_kept
        return rebuilt, grad_in, tuple(leaf_grads)


class ConditionalMaskedAffineCoupling(_ConditionalMaskedCoupling):
    r"""The conditional twin of :class:`MaskedAffineCoupling`:
    ``condition(context)`` returns a :class:`MaskedAffineCoupling` whose hypernet
    is ``hypernet(x * mask, context)``.

    .. math:: y = m \odot x + (1 - m) \odot \left(x \odot e^{s} + t\right), \quad
        (t, \tilde s) = \mathrm{NN}(m \odot x, c) .

    One network pass to sample, one to score. The batch dimensions of the input
    and of the context (``batch + (context_dim,)``) broadcast against each other.

    Arguments:
        mask: A binary tensor of the event shape.
        hypernet: Maps ``(x * mask, context)``, with equal batch shapes, to a tuple
            ``(shift, raw_scale)`` of shape ``batch + mask.shape``.
        scale_bound: The bound :math:`b > 0` of the log-scale.

    References:
        | Density estimation using Real NVP (Dinh et al., 2017)
        | https://arxiv.org/abs/1605.08803

    Example:
        >>> t = conditional_masked_affine_coupling(4, context_dim=2)
        >>> t.condition(torch.randn(2))(torch.randn(7, 4)).shape
        torch.Size([7, 4])
    """

    def __init__(
        self,
        mask: Tensor,
        hypernet: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
        *,
        scale_bound: float = 2.0,
    ) -> None:
        super().__init__(mask, hypernet)
        self.scale_bound = _checked_scale_bound(scale_bound)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.mask.shape)}, scale_bound={self.scale_bound}"

    def condition(self, context: Tensor) -> MaskedAffineCoupling:
        bound = bind_context(self.hypernet, context, self.mask.dim())
        return MaskedAffineCoupling._from_validated(self.mask, bound, scale_bound=self.scale_bound)


# ---------------------------------------------------------------------------
# additive coupling (NICE)
# ---------------------------------------------------------------------------


class AdditiveCoupling(_MaskedCoupling):
    r"""The additive coupling layer of NICE, with a binary mask over an event of any
    rank; volume preserving.

    .. math:: y = x + (1 - m) \odot t(m \odot x), \qquad
        x = y - (1 - m) \odot t(m \odot y), \qquad \log |\det J| = 0 .

    One network pass to sample, one to score; the log-det costs nothing (exact
    zeros with the batch shape, dtype and device of the input).

    Arguments:
        mask: A binary tensor of the event shape; ones mark the entries that pass
            through and feed the hypernet.
        hypernet: Maps ``x * mask`` (shape ``batch + mask.shape``) to a shift of the
            same shape (entries at ``mask == 1`` are ignored).

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Example:
        >>> t = additive_coupling(4)
        >>> x = torch.randn(3, 4)
        >>> t.log_abs_det_jacobian(x, t(x))
        tensor([0., 0., 0.])
    """

    volume_preserving = True

    def __init__(self, mask: Tensor, hypernet: Callable[[Tensor], Tensor]) -> None:
        super().__init__(mask, hypernet)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.mask.shape)}"

    def _shift(self, x_masked: Tensor) -> Tensor:
        shift = self.hypernet(x_masked)
        _check_params(shift, self.mask, "shift")
        return (1 - self.mask) * shift

    def _call(self, x: Tensor) -> Tensor:
        _check_event(x, self.mask, "x")
        return x + self._shift(x * self.mask)

    def _inverse(self, y: Tensor) -> Tensor:
        _check_event(y, self.mask, "y")
        return y - self._shift(y * self.mask)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        shape = torch.broadcast_shapes(x.shape, y.shape)
        return x.new_zeros(shape[: len(shape) - self.mask.dim()])

    def _memory_saving_backward(
        self,
        out: Tensor,
        grad_out: Tensor,
        grad_log_det: Tensor,
        leaves: Sequence[Tensor],
        inverse: bool,
    ) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
        r"""The backward step of a memory-saving stack: one recorded hypernet pass on
        :math:`m \odot x = m \odot y` rebuilds the input and gives the gradients
        (see :meth:`MaskedAffineCoupling._memory_saving_backward`)."""
        out = out.detach()
        kept = (out * self.mask).requires_grad_()
        shift = self._shift(kept)
        with torch.no_grad():
            rebuilt = out + shift if inverse else out - shift
        sign = -1.0 if inverse else 1.0
        grad_kept, *leaf_grads = torch.autograd.grad(
            shift, [kept, *leaves], sign * grad_out, allow_unused=True
        )
        grad_in = grad_out if grad_kept is None else grad_out + self.mask * grad_kept
        return rebuilt, grad_in, tuple(leaf_grads)


class ConditionalAdditiveCoupling(_ConditionalMaskedCoupling):
    r"""The conditional twin of :class:`AdditiveCoupling`: ``condition(context)``
    returns an :class:`AdditiveCoupling` whose hypernet is
    ``hypernet(x * mask, context)``.

    .. math:: y = x + (1 - m) \odot t(m \odot x, c), \qquad \log |\det J| = 0 .

    One network pass to sample, one to score. The batch dimensions of the input
    and of the context (``batch + (context_dim,)``) broadcast against each other.

    Arguments:
        mask: A binary tensor of the event shape.
        hypernet: Maps ``(x * mask, context)``, with equal batch shapes, to a shift
            of shape ``batch + mask.shape``.

    References:
        | NICE: Non-linear Independent Components Estimation (Dinh et al., 2014)
        | https://arxiv.org/abs/1410.8516

    Example:
        >>> t = conditional_additive_coupling(4, context_dim=2)
        >>> t.condition(torch.randn(5, 2))(torch.randn(4)).shape
        torch.Size([5, 4])
    """

    volume_preserving = True

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.mask.shape)}"

    def condition(self, context: Tensor) -> AdditiveCoupling:
        bound = bind_context(self.hypernet, context, self.mask.dim())
        return AdditiveCoupling._from_validated(self.mask, bound)


# ---------------------------------------------------------------------------
# helpers (vector events, dense hypernets)
# ---------------------------------------------------------------------------


def _vector_mask(input_dim: int, mask: Tensor | None) -> Tensor:
    _check_positive_int(input_dim, "input_dim", minimum=2)
    if mask is None:
        return half_mask(input_dim)
    if not isinstance(mask, Tensor) or mask.shape != (input_dim,):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"mask must have shape ({input_dim},) for input_dim={input_dim}, got {shape}"
        )
    return mask


def _hidden_dims(input_dim: int, hidden_dims: list[int] | None) -> list[int]:
    # Pyro's default for its coupling and autoregressive helpers
    hidden_dims = [10 * input_dim] if hidden_dims is None else list(hidden_dims)
    if not hidden_dims:
        raise ValueError("hidden_dims must name at least one hidden layer, got []")
    for h in hidden_dims:
        _check_positive_int(h, "each of hidden_dims")
    return hidden_dims


def masked_affine_coupling(
    input_dim: int,
    mask: Tensor | None = None,
    hidden_dims: list[int] | None = None,
    scale_bound: float = 2.0,
) -> MaskedAffineCoupling:
    r"""Build a :class:`MaskedAffineCoupling` for vector events ``(input_dim,)``.

    The hypernet is a :class:`~pyro_dgm.nn.CouplingMLP` (ReLU) from ``input_dim``
    inputs (the masked vector) to ``(shift, raw_scale)``, with its last layer
    zeroed: the layer starts as the identity.

    Arguments:
        input_dim: The event size :math:`D \geq 2`.
        mask: A binary mask of shape ``(input_dim,)``; :func:`half_mask` if ``None``.
        hidden_dims: The hidden layer sizes; ``[10 * input_dim]`` if ``None``.
        scale_bound: The bound of the log-scale.

    Example:
        >>> t = masked_affine_coupling(3)
        >>> x = torch.randn(3)
        >>> bool((t(x) == x).all())  # the identity until trained
        True
    """
    mask = _vector_mask(input_dim, mask)
    net = CouplingMLP(input_dim, _hidden_dims(input_dim, hidden_dims), num_outputs=2)
    return MaskedAffineCoupling(mask, net, scale_bound=scale_bound)


def conditional_masked_affine_coupling(
    input_dim: int,
    context_dim: int,
    mask: Tensor | None = None,
    hidden_dims: list[int] | None = None,
    scale_bound: float = 2.0,
) -> ConditionalMaskedAffineCoupling:
    r"""Build a :class:`ConditionalMaskedAffineCoupling` for vector events.

    The hypernet is a :class:`~pyro_dgm.nn.CouplingMLP` with a context, concatenated
    to the masked input; its last layer is zeroed, so every conditioned layer
    starts as the identity.

    Arguments:
        input_dim: The event size :math:`D \geq 2`.
        context_dim: The context size.
        mask: A binary mask of shape ``(input_dim,)``; :func:`half_mask` if ``None``.
        hidden_dims: The hidden layer sizes; ``[10 * input_dim]`` if ``None``.
        scale_bound: The bound of the log-scale.

    Example:
        >>> t = conditional_masked_affine_coupling(3, context_dim=2)
        >>> x = torch.randn(3)
        >>> bool((t.condition(torch.randn(2))(x) == x).all())
        True
    """
    mask = _vector_mask(input_dim, mask)
    _check_positive_int(context_dim, "context_dim")
    hidden = _hidden_dims(input_dim, hidden_dims)
    net = CouplingMLP(input_dim, hidden, num_outputs=2, context_dim=context_dim)
    return ConditionalMaskedAffineCoupling(mask, net, scale_bound=scale_bound)


def additive_coupling(
    input_dim: int, mask: Tensor | None = None, hidden_dims: list[int] | None = None
) -> AdditiveCoupling:
    r"""Build an :class:`AdditiveCoupling` for vector events ``(input_dim,)``.

    The hypernet is a :class:`~pyro_dgm.nn.CouplingMLP` (ReLU) with its last layer zeroed.

    Arguments:
        input_dim: The event size :math:`D \geq 2`.
        mask: A binary mask of shape ``(input_dim,)``; :func:`half_mask` if ``None``.
        hidden_dims: The hidden layer sizes; ``[10 * input_dim]`` if ``None``.

    Example:
        >>> additive_coupling(4, mask=alternating_mask(4, flip=True))(torch.randn(2, 4)).shape
        torch.Size([2, 4])
    """
    mask = _vector_mask(input_dim, mask)
    net = CouplingMLP(input_dim, _hidden_dims(input_dim, hidden_dims), num_outputs=1)
    return AdditiveCoupling(mask, net)


def conditional_additive_coupling(
    input_dim: int,
    context_dim: int,
    mask: Tensor | None = None,
    hidden_dims: list[int] | None = None,
) -> ConditionalAdditiveCoupling:
    r"""Build a :class:`ConditionalAdditiveCoupling` for vector events.

    The hypernet is a :class:`~pyro_dgm.nn.CouplingMLP` (context concatenated to the
    masked input) with its last layer zeroed.

    Arguments:
        input_dim: The event size :math:`D \geq 2`.
        context_dim: The context size.
        mask: A binary mask of shape ``(input_dim,)``; :func:`half_mask` if ``None``.
        hidden_dims: The hidden layer sizes; ``[10 * input_dim]`` if ``None``.

    Example:
        >>> t = conditional_additive_coupling(4, context_dim=2)
        >>> t.condition(torch.randn(2))(torch.randn(4)).shape
        torch.Size([4])
    """
    mask = _vector_mask(input_dim, mask)
    _check_positive_int(context_dim, "context_dim")
    hidden = _hidden_dims(input_dim, hidden_dims)
    net = CouplingMLP(input_dim, hidden, num_outputs=1, context_dim=context_dim)
    return ConditionalAdditiveCoupling(mask, net)
