r"""Reversible residual blocks (RevNet) and i-RevNet's invertible down-sampling.

A RevNet block splits its input along the feature dimension (the last one for
vectors, the channels for images) into :math:`(x_1, x_2)` and adds to each half a
residual network of the other:

.. math:: y_1 = x_1 + F(x_2), \quad y_2 = x_2 + G(y_1)
    \qquad \Longleftrightarrow \qquad
    x_2 = y_2 - G(y_1), \quad x_1 = y_1 - F(x_2),

inverted exactly by the same two networks, with :math:`\log |\det J| = 0` (two
volume-preserving additive couplings). :math:`F` and :math:`G` are any networks,
neither invertible nor constrained, which is what makes the block a drop-in for a
residual block (Gomez et al., 2017). Because the input is a function of the
output, a stack of these blocks does not need to keep its activations for the
backward pass: :class:`~pyro_dgm.transforms.MemorySavingStack` rebuilds them.

i-RevNet (Jacobsen et al., 2018) down-samples invertibly with the space-to-depth
reshuffle :math:`\psi` (:class:`~pyro_dgm.transforms.Squeeze`) inside such a
block: :class:`InvertibleDownsampling`.

References:
    | The Reversible Residual Network: Backpropagation Without Storing Activations
      (Gomez et al., 2017)
    | https://arxiv.org/abs/1707.04585

    | i-RevNet: Deep Invertible Networks (Jacobsen et al., 2018)
    | https://arxiv.org/abs/1802.07088
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro.distributions import ConditionalTransformModule, TransformModule, constraints
from pyro.nn import ConditionalDenseNN, DenseNN
from torch import Tensor, nn

from ..nn.conv import ConvResNet
from ..utils.checks import check_int, check_shape
from ._context import bind_context
from ._events import real_event
from .image import Squeeze

__all__ = [
    "ConditionalRevNetBlock",
    "InvertibleDownsampling",
    "RevNetBlock",
    "conditional_conv_revnet_block",
    "conditional_revnet_block",
    "conv_revnet_block",
    "invertible_downsampling",
    "revnet_block",
]

_SQUEEZE = Squeeze()


def _split_point(num_features: int, split: int | None) -> int:
    check_int(num_features, "num_features", 2)
    if split is None:
        return num_features // 2
    return check_int(split, "split", 1, num_features - 1)


def _check_features(x: Tensor, name: str, num_features: int, event_dim: int) -> None:
    if x.dim() < event_dim or x.shape[x.dim() - event_dim] != num_features:
        raise ValueError(
            f"{name}: expected {num_features} features at dimension -{event_dim} "
            f"(event_dim={event_dim}), got shape {tuple(x.shape)}"
        )


def _zero_last_linear(net: DenseNN | ConditionalDenseNN) -> DenseNN | ConditionalDenseNN:
    """Zero a Pyro dense network's last layer: its output is exactly 0 at first."""
    with torch.no_grad():
        net.layers[-1].weight.zero_()
        net.layers[-1].bias.zero_()
    return net


class _ResidualFunctions(TransformModule):
    """What the block and the down-sampling share: the split, the event constraint,
    the two residual functions and construction around a validated split."""

    bijective = True
    volume_preserving = True

    def __init__(
        self,
        f: Callable[..., Tensor],
        g: Callable[..., Tensor] | None,
        num_features: int,
        split: int | None,
        event_dim: int,
    ) -> None:
        super().__init__(cache_size=1)
        self._setup(f, g, num_features, _split_point(num_features, split), event_dim)

    def _setup(
        self,
        f: Callable[..., Tensor],
        g: Callable[..., Tensor] | None,
        num_features: int,
        split: int,
        event_dim: int,
    ) -> None:
        self.f = f
        self.g = g
        self.num_features = num_features
        self.split = split
        self._event_dim = event_dim
        self._constraint = real_event(event_dim)

    @classmethod
    def _from_parts(cls, *args: object) -> _ResidualFunctions:
        # condition() runs every step: skip the checks made once by the conditional module
        t = cls.__new__(cls)
        TransformModule.__init__(t, cache_size=1)
        t._setup(*args)
        return t

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._constraint

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, split={self.split}, event_dim={self._event_dim}"

    def _halves(self, x: Tensor) -> tuple[Tensor, Tensor]:
        axis = x.dim() - self._event_dim
        return x.narrow(axis, 0, self.split), x.narrow(
            axis, self.split, x.shape[axis] - self.split
        )

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        """Concatenate two halves along the features, their batch shapes broadcast."""
        k = self._event_dim
        batch = torch.broadcast_shapes(a.shape[: a.dim() - k], b.shape[: b.dim() - k])
        a = a.expand(*batch, *a.shape[a.dim() - k :])
        b = b.expand(*batch, *b.shape[b.dim() - k :])
        return torch.cat([a, b], dim=len(batch))

    def _residual(self, net: Callable[..., Tensor], x: Tensor, features: int, what: str) -> Tensor:
        out = net(x)
        if not isinstance(out, Tensor):  # a defect of the network, not of the data
            raise TypeError(f"{what} must return a tensor, got {type(out).__name__}")
        axis = out.dim() - self._event_dim
        if out.dim() < self._event_dim or out.shape[axis] != features:
            raise ValueError(
                f"{what}: expected an output with {features} features at dimension "
                f"-{self._event_dim}, got shape {tuple(out.shape)}"
            )
        return out

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        k = self._event_dim
        return x.new_zeros(torch.broadcast_shapes(x.shape[: x.dim() - k], y.shape[: y.dim() - k]))


class RevNetBlock(_ResidualFunctions):
    r"""The reversible residual block of RevNet (Gomez et al., 2017), as a flow layer.

    .. math:: y_1 = x_1 + F(x_2), \quad y_2 = x_2 + G(y_1), \qquad
        x_2 = y_2 - G(y_1), \quad x_1 = y_1 - F(x_2), \qquad \log |\det J| = 0 ,

    with :math:`x_1` the first ``split`` features of the input (dimension
    ``-event_dim``: the last for vectors, the channels for images) and :math:`x_2`
    the rest. The forward call (sampling, the generative direction) and the
    inverse (scoring) each cost one pass of :math:`F` and one of :math:`G`. Volume
    preserving: the block moves probability mass without changing densities, so a
    flow made only of RevNet blocks needs a scaling layer
    (:class:`~pyro_dgm.transforms.ActNorm`) to fit the data's spread.

    In a :class:`~pyro_dgm.transforms.MemorySavingStack` the block back-propagates
    by the paper's algorithm (its section 3.2): from the output and its gradient it
    rebuilds the input with one pass of each network, the passes whose graphs give
    the gradients, so no pass is spent on a separate rebuild.

    Arguments:
        f: :math:`F`, from ``batch + (C - split, ...)`` to ``batch + (split, ...)``.
        g: :math:`G`, from ``batch + (split, ...)`` to ``batch + (C - split, ...)``.
        num_features: The number of features :math:`C \geq 2`.
        split: The size of :math:`x_1`; ``C // 2`` if ``None``.
        event_dim: 1 for vectors ``(C,)``, 3 for images ``(C, H, W)``.

    References:
        | The Reversible Residual Network: Backpropagation Without Storing
          Activations (Gomez et al., 2017)
        | https://arxiv.org/abs/1707.04585

    Example:
        >>> t = revnet_block(4, hidden_dims=[8])
        >>> x = torch.randn(3, 4)
        >>> torch.equal(t(x), x)  # the identity until trained (zero last layers)
        True
        >>> t.log_abs_det_jacobian(x, t(x))
        tensor([0., 0., 0.])
    """

    def __init__(
        self,
        f: Callable[[Tensor], Tensor],
        g: Callable[[Tensor], Tensor],
        num_features: int,
        split: int | None = None,
        event_dim: int = 1,
    ) -> None:
        super().__init__(f, g, num_features, split, check_int(event_dim, "event_dim", 1))

    def _f(self, x2: Tensor) -> Tensor:
        return self._residual(self.f, x2, self.split, "the network F of RevNetBlock")

    def _g(self, y1: Tensor) -> Tensor:
        return self._residual(self.g, y1, self.num_features - self.split, "the network G")

    def _call(self, x: Tensor) -> Tensor:
        _check_features(x, "x", self.num_features, self._event_dim)
        x1, x2 = self._halves(x)
        y1 = x1 + self._f(x2)
        return self._join(y1, x2 + self._g(y1))

    def _inverse(self, y: Tensor) -> Tensor:
        _check_features(y, "y", self.num_features, self._event_dim)
        y1, y2 = self._halves(y)
        x2 = y2 - self._g(y1)
        return self._join(y1 - self._f(x2), x2)

    def _memory_saving_backward(
        self,
        out: Tensor,
        grad_out: Tensor,
        grad_log_det: Tensor,
        leaves: Sequence[Tensor],
        inverse: bool,
    ) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
        """RevNet's backward step (Gomez et al., 2017, algorithm 1).

        From the output ``out`` of a step (the inverse if ``inverse``, else the
        forward call) and its gradient, return the rebuilt input, the input's
        gradient and the gradients of ``leaves`` (parameters, context), with one pass
        of each network, recorded. The log-det is 0: ``grad_log_det`` is unused.
        """
        o1, o2 = (h.detach() for h in self._halves(out))
        g1, g2 = self._halves(grad_out)
        if inverse:
            # out = (x1, x2) with x2 = y2 - G(y1), x1 = y1 - F(x2); rebuild y
            x2 = o2.requires_grad_()
            f = self._f(x2)
            y1 = (o1 + f.detach()).requires_grad_()
            g = self._g(y1)
            y2 = o2 + g.detach()
            # dL/dx2 (total) = g2 - J_F^T g1;  dL/dy1 = g1 - J_G^T dL/dx2;  dL/dy2 = dL/dx2
            a, *from_f = torch.autograd.grad(f, [x2, *leaves], -g1, allow_unused=True)
            dx2 = g2 if a is None else g2 + a
            b, *from_g = torch.autograd.grad(g, [y1, *leaves], -dx2, allow_unused=True)
            dy1 = g1 if b is None else g1 + b
            return self._join(y1.detach(), y2), self._join(dy1, dx2), _add(from_f, from_g)
        # out = (y1, y2) with y1 = x1 + F(x2), y2 = x2 + G(y1); rebuild x
        y1 = o1.requires_grad_()
        g = self._g(y1)
        x2 = (o2 - g.detach()).requires_grad_()
        f = self._f(x2)
        x1 = o1 - f.detach()
        # dL/dy1 (total) = g1 + J_G^T g2;  dL/dx2 = g2 + J_F^T dL/dy1;  dL/dx1 = dL/dy1
        b, *from_g = torch.autograd.grad(g, [y1, *leaves], g2, allow_unused=True)
        dy1 = g1 if b is None else g1 + b
        a, *from_f = torch.autograd.grad(f, [x2, *leaves], dy1, allow_unused=True)
        dx2 = g2 if a is None else g2 + a
        return self._join(x1, x2.detach()), self._join(dy1, dx2), _add(from_f, from_g)


def _add(a: Sequence[Tensor | None], b: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
    """Elementwise sum of two gradient lists, ``None`` meaning zero."""
    return tuple(u if v is None else v if u is None else u + v for u, v in zip(a, b, strict=True))


class ConditionalRevNetBlock(ConditionalTransformModule):
    r"""The conditional twin of :class:`RevNetBlock`: ``condition(context)`` returns a
    :class:`RevNetBlock` whose networks also see the context.

    .. math:: y_1 = x_1 + F(x_2, c), \quad y_2 = x_2 + G(y_1, c), \qquad \log |\det J| = 0 .

    The batch dimensions of the input and of the context (``batch + (context_dim,)``)
    broadcast against each other; the networks meet equal batch shapes.

    Arguments:
        f: :math:`F(x_2, c)`, to ``batch + (split, ...)``.
        g: :math:`G(y_1, c)`, to ``batch + (C - split, ...)``.
        num_features: The number of features :math:`C \geq 2`.
        split: The size of :math:`x_1`; ``C // 2`` if ``None``.
        event_dim: 1 for vectors, 3 for images.

    Example:
        >>> t = conditional_revnet_block(4, context_dim=2, hidden_dims=[8])
        >>> t.condition(torch.randn(5, 2))(torch.randn(4)).shape
        torch.Size([5, 4])
    """

    bijective = True
    volume_preserving = True

    def __init__(
        self,
        f: Callable[[Tensor, Tensor], Tensor],
        g: Callable[[Tensor, Tensor], Tensor],
        num_features: int,
        split: int | None = None,
        event_dim: int = 1,
    ) -> None:
        super().__init__()
        self.f, self.g = f, g
        self.num_features = num_features
        self.split = _split_point(num_features, split)
        self._event_dim = check_int(event_dim, "event_dim", 1)
        self._constraint = real_event(self._event_dim)

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._constraint

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, split={self.split}, event_dim={self._event_dim}"

    def condition(self, context: Tensor) -> RevNetBlock:
        f = bind_context(self.f, context, self._event_dim)
        g = bind_context(self.g, context, self._event_dim)
        return RevNetBlock._from_parts(f, g, self.num_features, self.split, self._event_dim)


class InvertibleDownsampling(_ResidualFunctions):
    r"""i-RevNet's down-sampling block (Jacobsen et al., 2018): the space-to-depth
    reshuffle :math:`\psi` (:class:`~pyro_dgm.transforms.Squeeze`) inside a RevNet
    block, :math:`(C, H, W) \to (4C, H/2, W/2)`.

    .. math:: y = \big(\psi(x_2),\ \psi(x_1) + F(\psi(x_2))\big), \qquad
        x_2 = \psi^{-1}(y_a), \quad x_1 = \psi^{-1}\big(y_b - F(y_a)\big), \qquad
        \log |\det J| = 0 ,

    with :math:`x_1` the first ``split`` channels, :math:`y_a` the first
    :math:`4(C - \mathrm{split})` output channels and :math:`y_b` the rest. It is
    i-RevNet's block with stride 2, whose strided residual branch is here a network
    applied after :math:`\psi`. Like :class:`~pyro_dgm.transforms.Squeeze`, the
    forward call is the down-sampling (the inference direction of an image flow);
    ``.inv`` is its generative direction. One pass of :math:`F` each way.

    Arguments:
        f: :math:`F`, from ``batch + (4 (C - split), H/2, W/2)`` to
            ``batch + (4 split, H/2, W/2)``.
        num_features: The channels :math:`C \geq 2`.
        split: The channels of :math:`x_1`; ``C // 2`` if ``None``.

    References:
        | i-RevNet: Deep Invertible Networks (Jacobsen et al., 2018)
        | https://arxiv.org/abs/1802.07088

    Example:
        >>> t = invertible_downsampling((2, 4, 4), hidden_channels=8)
        >>> x = torch.randn(3, 2, 4, 4)
        >>> t(x).shape
        torch.Size([3, 8, 2, 2])
        >>> torch.allclose(t.inv(t(x)), x)
        True
    """

    def __init__(
        self, f: Callable[[Tensor], Tensor], num_features: int, split: int | None = None
    ) -> None:
        super().__init__(f, None, num_features, split, 3)

    def forward_shape(self, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        return _SQUEEZE.forward_shape(shape)

    def inverse_shape(self, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        return _SQUEEZE.inverse_shape(shape)

    def _branch(self, y_a: Tensor) -> Tensor:
        return self._residual(
            self.f, y_a, 4 * self.split, "the network F of InvertibleDownsampling"
        )

    def _call(self, x: Tensor) -> Tensor:
        _check_features(x, "x", self.num_features, 3)
        x1, x2 = self._halves(x)
        y_a = _SQUEEZE._call(x2)
        y_b = _SQUEEZE._call(x1) + self._branch(y_a)
        return self._join(y_a, y_b)

    def _inverse(self, y: Tensor) -> Tensor:
        _check_features(y, "y", 4 * self.num_features, 3)
        kept = 4 * (self.num_features - self.split)
        y_a, y_b = y[..., :kept, :, :], y[..., kept:, :, :]
        x1 = _SQUEEZE._inverse(y_b - self._branch(y_a))
        return self._join(x1, _SQUEEZE._inverse(y_a))

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return x.new_zeros(x.shape[:-3])


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _hidden(input_dim: int, hidden_dims: Sequence[int] | None) -> list[int]:
    hidden = [max(32, 4 * input_dim)] if hidden_dims is None else list(hidden_dims)
    if not hidden:
        raise ValueError("hidden_dims: expected at least one hidden layer, got []")
    for h in hidden:
        check_int(h, "each of hidden_dims", 1)
    return hidden


def revnet_block(
    input_dim: int, hidden_dims: Sequence[int] | None = None, split: int | None = None
) -> RevNetBlock:
    r"""Build a :class:`RevNetBlock` for vectors ``(input_dim,)`` whose :math:`F` and
    :math:`G` are Pyro ``DenseNN``\ s (ReLU) with zeroed last layers: the block starts
    as the identity.

    Arguments:
        input_dim: The event size :math:`D \geq 2`.
        hidden_dims: Hidden sizes of each network; ``[max(32, 4 D)]`` if ``None``.
        split: The size of :math:`x_1`; ``D // 2`` if ``None``.

    Example:
        >>> revnet_block(5, [16])(torch.randn(2, 5)).shape
        torch.Size([2, 5])
    """
    c1 = _split_point(input_dim, split)
    c2 = input_dim - c1
    hidden = _hidden(input_dim, hidden_dims)
    f = _zero_last_linear(DenseNN(c2, hidden, param_dims=[c1]))
    g = _zero_last_linear(DenseNN(c1, hidden, param_dims=[c2]))
    return RevNetBlock(f, g, input_dim, c1, event_dim=1)


def conditional_revnet_block(
    input_dim: int,
    context_dim: int,
    hidden_dims: Sequence[int] | None = None,
    split: int | None = None,
) -> ConditionalRevNetBlock:
    r"""Build a :class:`ConditionalRevNetBlock` for vectors: :math:`F` and :math:`G` are
    Pyro ``ConditionalDenseNN``\ s (the context concatenated to the input) with zeroed
    last layers.

    Example:
        >>> t = conditional_revnet_block(3, context_dim=2, hidden_dims=[8])
        >>> x = torch.randn(3)
        >>> torch.equal(t.condition(torch.randn(2))(x), x)
        True
    """
    c1 = _split_point(input_dim, split)
    c2 = input_dim - c1
    check_int(context_dim, "context_dim", 1)
    hidden = _hidden(input_dim, hidden_dims)
    f = _zero_last_linear(ConditionalDenseNN(c2, context_dim, hidden, param_dims=[c1]))
    g = _zero_last_linear(ConditionalDenseNN(c1, context_dim, hidden, param_dims=[c2]))
    f.context_dim = g.context_dim = context_dim
    return ConditionalRevNetBlock(f, g, input_dim, c1, event_dim=1)


class _ContextConvResNet(nn.Module):
    """A :class:`~pyro_dgm.nn.ConvResNet` that also sees a context of ``K`` images of
    the event's height and width, passed flattened (``batch + (K * H * W,)``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        context_shape: tuple[int, int, int],
        hidden_channels: int,
        num_blocks: int,
    ) -> None:
        super().__init__()
        self.context_shape = context_shape
        self.context_dim = context_shape[0] * context_shape[1] * context_shape[2]
        self.net = ConvResNet(
            in_channels + context_shape[0], out_channels, hidden_channels, num_blocks
        )

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        context = context.reshape(*context.shape[:-1], *self.context_shape).to(x.dtype)
        return self.net(torch.cat([x, context], dim=-3))


def _image_split(event_shape: Sequence[int], split: int | None) -> tuple[int, int, int, int, int]:
    c, h, w = check_shape(event_shape, "event_shape", ndim=3)
    c1 = _split_point(c, split)
    return c, h, w, c1, c - c1


def conv_revnet_block(
    event_shape: Sequence[int],
    hidden_channels: int = 64,
    num_blocks: int = 1,
    split: int | None = None,
) -> RevNetBlock:
    r"""Build a :class:`RevNetBlock` for images :math:`(C, H, W)` whose :math:`F` and
    :math:`G` are :class:`~pyro_dgm.nn.ConvResNet`\ s (3x3 convolutions, last layer
    zero: the block starts as the identity), splitting the channels.

    Arguments:
        event_shape: The image shape :math:`(C, H, W)`, :math:`C \geq 2`.
        hidden_channels: Width of each network.
        num_blocks: Residual blocks of each network.
        split: The channels of :math:`x_1`; ``C // 2`` if ``None``.

    Example:
        >>> t = conv_revnet_block((2, 4, 4), hidden_channels=8)
        >>> t(torch.randn(3, 2, 4, 4)).shape
        torch.Size([3, 2, 4, 4])
    """
    c, _, _, c1, c2 = _image_split(event_shape, split)
    f = ConvResNet(c2, c1, hidden_channels, num_blocks)
    g = ConvResNet(c1, c2, hidden_channels, num_blocks)
    return RevNetBlock(f, g, c, c1, event_dim=3)


def conditional_conv_revnet_block(
    event_shape: Sequence[int],
    context_channels: int,
    hidden_channels: int = 64,
    num_blocks: int = 1,
    split: int | None = None,
) -> ConditionalRevNetBlock:
    r"""The conditional twin of :func:`conv_revnet_block`: the context is a stack of
    ``context_channels`` images of the event's height and width, passed flattened
    (``batch + (context_channels * H * W,)``), appended to the input of both networks.

    Example:
        >>> t = conditional_conv_revnet_block((2, 4, 4), 1, hidden_channels=8)
        >>> t.condition(torch.randn(3, 16))(torch.randn(3, 2, 4, 4)).shape
        torch.Size([3, 2, 4, 4])
    """
    c, h, w, c1, c2 = _image_split(event_shape, split)
    k = check_int(context_channels, "context_channels", 1)
    f = _ContextConvResNet(c2, c1, (k, h, w), hidden_channels, num_blocks)
    g = _ContextConvResNet(c1, c2, (k, h, w), hidden_channels, num_blocks)
    return ConditionalRevNetBlock(f, g, c, c1, event_dim=3)


def invertible_downsampling(
    event_shape: Sequence[int],
    hidden_channels: int = 64,
    num_blocks: int = 1,
    split: int | None = None,
) -> InvertibleDownsampling:
    r"""Build an :class:`InvertibleDownsampling` for images :math:`(C, H, W)` (even
    :math:`H`, :math:`W`) whose :math:`F` is a :class:`~pyro_dgm.nn.ConvResNet` on the
    squeezed half (last layer zero: the block starts as a squeeze that swaps halves).

    Example:
        >>> invertible_downsampling((2, 8, 8), hidden_channels=8).forward_shape((5, 2, 8, 8))
        (5, 8, 4, 4)
    """
    c, h, w, c1, c2 = _image_split(event_shape, split)
    if h % 2 or w % 2:
        raise ValueError(f"event_shape: expected even H and W, got {tuple(event_shape)}")
    f = ConvResNet(4 * c2, 4 * c1, hidden_channels, num_blocks)
    return InvertibleDownsampling(f, c, c1)
