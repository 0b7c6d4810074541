r"""Autoregressive distributions over integer images and sequences: PixelCNN and WaveNet.

.. math:: P(y) = \prod_{d=1}^{D} P(y_d \mid y_{<d}),

in raster order with the channels innermost (see :mod:`pyro_dgm.nn.masked_conv`).
Each conditional is a mixture of discretized logistics
(:class:`~pyro_dgm.distributions.DiscretizedLogisticMixture`, PixelCNN++) or a
categorical over the :math:`L` levels, with parameters predicted by a masked
convolutional network that sees only :math:`y_{<d}`.

**Design.** As with :class:`~pyro_dgm.flows.Flow`, the learnable object is a module
that returns a distribution when called: :class:`PixelCNN` and :class:`WaveNet` are
``nn.Module``\ s owning the network (so ``pyro.module``, ``.to``, ``.double`` and
``state_dict`` see every parameter), and ``model(context)`` (or, Pyro's conditional
idiom, ``model.condition(context)``) returns an :class:`AutoregressiveDistribution`,
a ``TorchDistribution`` with the whole protocol:

.. code-block:: python

    pixelcnn = PixelCNN((1, 8, 8), num_levels=17)
    pyro.module("pixelcnn", pixelcnn)
    with pyro.plate("data", len(y)):
        pyro.sample("x", pixelcnn(), obs=y)          # or pixelcnn(z) as a VAE decoder

* ``event_shape`` is ``(C, H, W)`` (images) or ``(C, T)`` (sequences, :math:`C = 1`
  for a single channel, like an image); ``batch_shape`` is the context's batch shape,
  ``()`` without one, and ``expand`` (so plates) adds batch dimensions;
* ``support`` is :math:`\{0, \dots, L-1\}` per coordinate
  (``independent(integer_interval(0, L - 1), len(event_shape))``);
* ``log_prob`` costs one parallel pass of the network;
* ``sample(sample_shape, method="cached")`` generates position by position: the
  default ``"cached"`` sampler computes each activation once (fast generation,
  Ramachandran et al., 2017), ``"naive"`` reruns the network for every position
  (:math:`D` passes); both consume the random stream identically and give the same
  samples up to floating-point rounding of the parameters;
* the module's :meth:`~AutoregressiveModule.generate` is the loop under ``sample``
  with the choice of each value left to the caller (drawing it samples, reading it
  from an entropy decoder decompresses, :mod:`pyro_dgm.compression`), and
  :meth:`~AutoregressiveModule.level_log_probs` gives a conditional's log-mass of
  every level;
* with ``validate_args`` (or ``pyro.enable_validation``), values that are not
  integers in :math:`\{0, \dots, L-1\}` raise ``ValueError``; a wrong event shape
  always does.

References:
    | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
    | https://arxiv.org/abs/1606.05328
    | PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood
      and Other Modifications (Salimans et al., 2017)
    | https://arxiv.org/abs/1701.05517
    | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016)
    | https://arxiv.org/abs/1609.03499
    | Fast Generation for Convolutional Autoregressive Models (Ramachandran et al., 2017)
    | https://arxiv.org/abs/1704.06001
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.conditional import ConditionalDistribution
from torch import Tensor, nn

from ..nn import PixelCNNNetwork, WaveNetNetwork
from .discretized import DiscretizedLogisticMixture

__all__ = [
    "OUTPUTS",
    "AutoregressiveDistribution",
    "AutoregressiveModule",
    "PixelCNN",
    "WaveNet",
]

#: The conditional distributions of one coordinate that the models can output.
OUTPUTS = ("logistic_mixture", "categorical")

_SAMPLERS = ("cached", "naive")


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


class AutoregressiveDistribution(TorchDistribution):
    r"""The distribution of a :class:`PixelCNN` or :class:`WaveNet`, given a context.

    .. math:: \log P(y \mid c) = \sum_{d=1}^D \log P(y_d \mid y_{<d}, c).

    Built by calling the module (``pixelcnn(context)``); see the module docstring for
    the protocol. ``log_prob`` is one network pass over the value's batch (broadcast
    against the context's); ``sample`` generates :math:`D` positions in order.

    Arguments:
        module: The :class:`PixelCNN` or :class:`WaveNet` that defines it.
        context: ``(*batch_shape, context_dim)``, or ``None`` for an unconditional model.
        validate_args: Whether to validate the values scored.

    Example:
        >>> pixelcnn = PixelCNN((1, 4, 4), num_levels=5, hidden_channels=8, num_layers=2,
        ...                     context_dim=3)
        >>> d = pixelcnn(torch.randn(2, 3))
        >>> d.batch_shape, d.event_shape
        (torch.Size([2]), torch.Size([1, 4, 4]))
        >>> y = torch.randint(0, 5, (6, 2, 1, 4, 4))
        >>> d.log_prob(y).shape  # one network pass
        torch.Size([6, 2])
        >>> bool(d.support.check(y).all()), d.expand((7, 2)).batch_shape
        (True, torch.Size([7, 2]))
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    has_rsample = False
    has_enumerate_support = False

    def __init__(
        self,
        module: AutoregressiveModule,
        context: Tensor | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        module._check_context(context)
        self.module = module
        self.context = context
        batch_shape = torch.Size(()) if context is None else context.shape[:-1]
        super().__init__(batch_shape, module.event_shape, validate_args=validate_args)

    @property
    def num_levels(self) -> int:
        """:math:`L`, the number of levels of every coordinate."""
        return self.module.num_levels

    @property
    def support(self) -> constraints.Constraint:
        interval = constraints.integer_interval(0, self.num_levels - 1)
        return constraints.independent(interval, len(self.event_shape))

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: Any = None
    ) -> AutoregressiveDistribution:
        new = self._get_checked_instance(AutoregressiveDistribution, _instance)
        batch_shape = torch.Size(batch_shape)
        own = self._context_batch_shape()
        try:
            ok = torch.broadcast_shapes(own, batch_shape) == batch_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"batch_shape: cannot expand a context of batch shape {tuple(own)} "
                f"to {tuple(batch_shape)}"
            )
        new.module = self.module
        new.context = self.context
        super(AutoregressiveDistribution, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def _context_batch_shape(self) -> torch.Size:
        return torch.Size(()) if self.context is None else self.context.shape[:-1]

    def _check_value_shape(self, value: Tensor) -> None:
        k = len(self.event_shape)
        if value.dim() < k or value.shape[value.dim() - k :] != self.event_shape:
            raise ValueError(
                f"{type(self.module).__name__}: value must have shape "
                f"(..., {', '.join(map(str, self.event_shape))}); got {tuple(value.shape)}"
            )

    def _validate_sample(self, value: Tensor) -> None:
        name = type(self.module).__name__
        if not isinstance(value, Tensor):
            raise ValueError(f"{name}: value must be a Tensor, got {type(value).__name__}")
        self._check_value_shape(value)
        hi = self.num_levels - 1
        check = value.long() if value.dtype == torch.bool else value
        ok = (check >= 0) & (check <= hi)
        if check.is_floating_point():
            ok = ok & (check == check.floor())
        if not bool(ok.all()):
            bad = check[~ok].unique()
            listed = ", ".join(f"{v:g}" for v in bad[:8].tolist())
            more = f" (and {bad.numel() - 8} more)" if bad.numel() > 8 else ""
            raise ValueError(
                f"{name}: value must be integers in {{0, ..., {hi}}}; got {listed}{more}"
            )
        try:
            torch.broadcast_shapes(
                value.shape[: value.dim() - len(self.event_shape)], self.batch_shape
            )
        except RuntimeError as error:
            raise ValueError(
                f"{name}: value of batch shape "
                f"{tuple(value.shape[: value.dim() - len(self.event_shape)])} does not "
                f"broadcast with batch_shape {tuple(self.batch_shape)}"
            ) from error

    def log_prob(self, value: Tensor) -> Tensor:
        value = torch.as_tensor(value)
        if self._validate_args:
            self._validate_sample(value)
        self._check_value_shape(value)
        event_shape = self.event_shape
        value_batch = value.shape[: value.dim() - len(event_shape)]
        own = self._context_batch_shape()
        try:
            batch = torch.broadcast_shapes(value_batch, own)
            out_shape = torch.broadcast_shapes(value_batch, self.batch_shape)
        except RuntimeError as error:
            raise ValueError(
                f"{type(self.module).__name__}: value of batch shape {tuple(value_batch)} "
                f"does not broadcast with batch_shape {tuple(self.batch_shape)}"
            ) from error
        flat = value.expand(batch + event_shape).reshape(-1, *event_shape)
        context = None
        if self.context is not None:
            context = self.context.expand(batch + self.context.shape[-1:])
            context = context.reshape(-1, self.context.shape[-1])
        log_p = self.module._log_prob_flat(flat, context)
        return log_p.reshape(batch).expand(out_shape)

    def sample(
        self, sample_shape: torch.Size | tuple[int, ...] = (), method: str = "cached"
    ) -> Tensor:
        """Draw samples position by position (no gradient).

        Arguments:
            sample_shape: Leading sample dimensions.
            method: ``"cached"`` (incremental, about one network pass per sample) or
                ``"naive"`` (one full network pass per position).
        """
        if method not in _SAMPLERS:
            raise ValueError(f"method: expected one of {_SAMPLERS}, got {method!r}")
        shape = torch.Size(sample_shape) + self.batch_shape
        n = math.prod(shape)
        context = None
        if self.context is not None:
            context = self.context.expand(shape + self.context.shape[-1:])
            context = context.reshape(n, -1)
        module = self.module
        with torch.no_grad():
            y = module.generate(n, context, lambda params, _: module._draw(params), method)
        return y.reshape(shape + self.event_shape)

    def _no_closed_form(self, name: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self.module).__name__}: the {name} has no closed form (it is a sum over "
            f"all {self.num_levels}^{math.prod(self.event_shape)} values); estimate it from "
            "samples, e.g. d.sample((n,))"
        )

    @property
    def mean(self) -> Tensor:
        raise self._no_closed_form("mean")

    @property
    def variance(self) -> Tensor:
        raise self._no_closed_form("variance")

    def entropy(self) -> Tensor:
        raise self._no_closed_form("entropy")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.module).__name__}, batch_shape: "
            f"{tuple(self.batch_shape)}, event_shape: {tuple(self.event_shape)}, "
            f"num_levels: {self.num_levels})"
        )


class AutoregressiveModule(nn.Module, ConditionalDistribution):
    r"""The base of :class:`PixelCNN` and :class:`WaveNet`: a module that owns a masked
    network and returns an :class:`AutoregressiveDistribution` when called.

    .. math:: P(y \mid c) = \prod_{d=1}^{D} P(y_d \mid y_{<d}, c)

    It holds what both share: the output family of one coordinate (a mixture of
    discretized logistics or a categorical), the scaling of the levels to the
    network's input range, scoring in one network pass and drawing one coordinate.
    A subclass sets ``network`` and implements ``_generate`` (the loop of
    :meth:`generate`).

    Two public hooks expose the conditionals one at a time, for any procedure that
    chooses the values in the model's order (sampling draws them; an entropy decoder
    reads them, :mod:`pyro_dgm.compression`): :meth:`generate` runs the incremental
    loop and asks a ``choose(params, position)`` callback for each value, and
    :meth:`level_log_probs` turns a conditional's parameters into the log-mass of each
    of the :math:`L` levels.

    Arguments:
        event_shape: The shape of one data point.
        num_levels: :math:`L \ge 2`.
        output: ``"logistic_mixture"`` or ``"categorical"``.
        num_components: :math:`K`, logistics per mixture.
        context_dim: Size of a context vector, or ``None``.

    Example:
        >>> wavenet = WaveNet(8, num_levels=4, residual_channels=4, num_layers=2,
        ...                   output="categorical")
        >>> isinstance(wavenet, AutoregressiveModule), wavenet.num_params
        (True, 4)
        >>> seen = []
        >>> def choose(params, position):  # the most likely level, in the model's order
        ...     seen.append(position)
        ...     return wavenet.level_log_probs(params).argmax(-1)
        >>> y = wavenet.generate(3, None, choose)
        >>> y.shape, seen[:3]
        (torch.Size([3, 1, 8]), [(0, 0), (0, 1), (0, 2)])
        >>> params = torch.zeros(3, wavenet.num_params)
        >>> wavenet.level_log_probs(params).exp().sum(-1)  # each row a distribution
        tensor([1., 1., 1.])
    """

    #: Smooth lower bound of the logistic scales, in levels (no hard clamp).
    min_scale: ClassVar[float] = 0.01

    network: nn.Module

    def __init__(
        self,
        event_shape: tuple[int, ...],
        num_levels: int,
        output: str,
        num_components: int,
        context_dim: int | None,
    ) -> None:
        super().__init__()
        self.event_shape = torch.Size(event_shape)
        self.num_levels = _check_int("num_levels", num_levels, 2)
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {OUTPUTS}, got {output!r}")
        self.output = output
        self.num_components = _check_int("num_components", num_components, 1)
        if context_dim is not None:
            context_dim = _check_int("context_dim", context_dim, 1)
        self.context_dim = context_dim

    @property
    def num_params(self) -> int:
        """:math:`P`, parameters per coordinate: :math:`L` logits, or :math:`3K` for a
        mixture of :math:`K` logistics (logits, locations, scales)."""
        if self.output == "categorical":
            return self.num_levels
        return 3 * self.num_components

    def _check_context(self, context: Tensor | None) -> None:
        name = type(self).__name__
        if self.context_dim is None:
            if context is not None:
                raise ValueError(
                    f"context: this {name} was built without context_dim; got a context "
                    f"of shape {tuple(context.shape)}"
                )
            return
        if context is None:
            raise ValueError(f"context: this {name} needs a context (..., {self.context_dim})")
        if not isinstance(context, Tensor) or not context.is_floating_point():
            raise ValueError(
                f"context: expected a floating tensor (..., {self.context_dim}) "
                f"(one-hot encode class labels), got {context!r:.80}"
            )
        if context.dim() < 1 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context: expected shape (..., {self.context_dim}), got {tuple(context.shape)}"
            )

    def forward(self, context: Tensor | None = None) -> AutoregressiveDistribution:
        """The distribution given ``context`` (``None`` for an unconditional model)."""
        return AutoregressiveDistribution(self, context)

    def condition(self, context: Tensor) -> AutoregressiveDistribution:
        """Pyro's ``ConditionalDistribution`` idiom: the same as calling the module."""
        return self(context)

    # -- the conditionals of single coordinates ----------------------------
    def _reference(self) -> Tensor:
        return next(self.parameters())

    def _scale_input(self, y: Tensor) -> Tensor:
        """Levels :math:`\\{0..L-1\\}` to the network's input range :math:`[-1, 1]`."""
        return y * (2.0 / (self.num_levels - 1)) - 1.0

    def _mixture(self, params: Tensor) -> DiscretizedLogisticMixture:
        logits, locs, scales = params.split(self.num_components, dim=-1)
        half = (self.num_levels - 1) / 2
        return DiscretizedLogisticMixture(
            logits,
            half * (1.0 + locs),
            half * F.softplus(scales - 2.0) + self.min_scale,
            self.num_levels,
            validate_args=False,
        )

    def _log_mass(self, params: Tensor, y: Tensor) -> Tensor:
        """``log P(y | params)`` per coordinate; ``params`` ``(..., P)``, ``y`` ``(...)``."""
        if self.output == "categorical":
            log_p = params.log_softmax(-1)
            return log_p.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
        return self._mixture(params).log_prob(y)

    def _draw(self, params: Tensor) -> Tensor:
        """One value per row of ``params`` ``(n, P)``, as floats holding levels."""
        if self.output == "categorical":
            draw = torch.distributions.Categorical(logits=params, validate_args=False).sample()
            return draw.to(params.dtype)
        return self._mixture(params).sample()

    def level_log_probs(self, params: Tensor) -> Tensor:
        r"""The log-mass of every level under the conditionals with parameters ``params``.

        .. math:: \ell_{v} = \log P(y_d = v \mid \theta_d), \qquad v = 0, \dots, L-1,

        the categorical's log-softmax, or the bin masses of the discretized logistic
        mixture (exact in log space, :class:`DiscretizedLogisticMixture`); each row sums
        to one in probability up to rounding. Cost :math:`O(L)` (:math:`O(KL)`) per row.

        Arguments:
            params: ``(..., P)``, as :meth:`generate` passes them to ``choose``.

        Returns:
            ``(..., L)`` log-probabilities, in the dtype of ``params``.
        """
        if params.dim() < 1 or params.shape[-1] != self.num_params:
            raise ValueError(
                f"params: expected shape (..., {self.num_params}), got {tuple(params.shape)}"
            )
        if self.output == "categorical":
            return params.log_softmax(-1)
        mixture = self._mixture(params)
        levels = mixture.enumerate_support(expand=False)  # (L, 1, ..., 1)
        return mixture.log_prob(levels).movedim(0, -1)

    def generate(
        self,
        n: int,
        context: Tensor | None,
        choose: Callable[[Tensor, tuple[int, ...]], Tensor],
        method: str = "cached",
    ) -> Tensor:
        r"""Run the autoregressive loop for ``n`` data points, the values chosen by ``choose``.

        .. math:: \theta_d = \mathrm{net}(y_{<d}, c), \qquad y_d = \mathrm{choose}(\theta_d, d),
            \qquad d = 1, \dots, D,

        in the model's order (raster order, channels innermost). ``choose(params,
        position)`` gets the conditional's parameters ``(n, P)`` (what
        :meth:`level_log_probs` reads) and the coordinate ``position``, an index into
        ``event_shape`` (``(k, i, j)`` for a PixelCNN, ``(k, t)`` for a WaveNet), and
        returns the ``n`` values ``(n,)`` (levels, integer or floating), which the loop
        then conditions on. Drawing them is sampling (``sample`` is this loop with a
        drawing ``choose``); reading them from an entropy decoder is decompression. The
        ``"cached"`` loop costs about one network pass in total, ``"naive"`` one pass per
        coordinate; both call ``choose`` in the same order. No gradient is kept.

        Arguments:
            n: Data points generated together.
            context: ``(n, context_dim)``, or ``None`` for an unconditional model.
            choose: The callback, called :math:`D` times.
            method: ``"cached"`` or ``"naive"``.

        Returns:
            The values ``(n, *event_shape)``, floats holding levels (the module's dtype).
        """
        n = _check_int("n", n, 1)
        if method not in _SAMPLERS:
            raise ValueError(f"method: expected one of {_SAMPLERS}, got {method!r}")
        self._check_context(context)
        if context is not None and context.shape != (n, self.context_dim):
            raise ValueError(
                f"context: expected shape ({n}, {self.context_dim}), got {tuple(context.shape)}"
            )
        ref = self._reference()
        levels = self.num_levels

        def chosen(params: Tensor, position: tuple[int, ...]) -> Tensor:
            value = choose(params, position)
            if isinstance(value, Tensor) and value.dtype == ref.dtype:
                out = value.to(device=ref.device)
            else:
                out = torch.as_tensor(value).to(dtype=ref.dtype, device=ref.device)
            if out.shape != (n,):
                raise ValueError(
                    f"choose: expected {n} values (shape ({n},)) at position {position}, got "
                    f"shape {tuple(out.shape)}"
                )
            return out

        # dropout regularises training only: generation (sampling, decoding) runs the
        # network as it is evaluated, so "cached" and "naive" draw the same values
        training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad():
                y = self._generate(n, context, chosen, method)
        finally:
            self.network.train(training)
        if not bool(((y >= 0) & (y <= levels - 1) & (y == y.floor())).all()):
            raise ValueError(
                f"choose: returned values outside the levels {{0, ..., {levels - 1}}}"
            )
        return y

    def _log_prob_flat(self, y: Tensor, context: Tensor | None) -> Tensor:
        """``log P(y)`` of ``y`` ``(n, *event_shape)``: one network pass."""
        ref = self._reference()
        y = y.to(device=ref.device, dtype=ref.dtype)
        params = self.network(self._scale_input(y), context).movedim(1, -1)
        return self._log_mass(params, y).reshape(len(y), -1).sum(-1)

    def _generate(
        self,
        n: int,
        context: Tensor | None,
        choose: Callable[[Tensor, tuple[int, ...]], Tensor],
        method: str,
    ) -> Tensor:
        raise NotImplementedError


#: The former private name of :class:`AutoregressiveModule` (``models.autoregressive``
#: imports it), kept for one release.
_AutoregressiveModule = AutoregressiveModule


class PixelCNN(AutoregressiveModule):
    r"""A gated PixelCNN over integer images :math:`(C, H, W)` with :math:`L` levels.

    .. math:: P(y \mid c) = \prod_{i,j} \prod_{k=1}^{C}
        P\big(y_{k,i,j} \mid y_{\prec(i,j)},\, y_{<k,i,j},\, c\big),

    each conditional a mixture of :math:`K` discretized logistics (``output=
    "logistic_mixture"``, on the data scale: locations and scales in levels) or a
    categorical over the levels (``"categorical"``). The network is
    :class:`~pyro_dgm.nn.PixelCNNNetwork` (vertical and horizontal stacks, no blind
    spot; channels ordered within a pixel). Calling the module returns an
    :class:`AutoregressiveDistribution` with event shape :math:`(C, H, W)`.

    Scoring: one network pass, :math:`O(N F^2 k^2 HW)`. Sampling: :math:`CHW`
    positions in order; ``method="cached"`` computes each activation once (about one
    pass in total), ``"naive"`` reruns the network :math:`CHW` times.

    References:
        | Conditional Image Generation with PixelCNN Decoders (van den Oord et al., 2016)
        | https://arxiv.org/abs/1606.05328
        | PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood
          and Other Modifications (Salimans et al., 2017)
        | https://arxiv.org/abs/1701.05517

    Arguments:
        event_shape: :math:`(C, H, W)`.
        num_levels: :math:`L \ge 2`.
        hidden_channels: Feature maps per stack (a multiple of :math:`C`).
        num_layers: Gated blocks :math:`N \ge 1`.
        kernel_size: Odd kernel width :math:`k \ge 3`.
        output: ``"logistic_mixture"`` or ``"categorical"``.
        num_components: :math:`K`, logistics per mixture.
        context_dim: Size of a context vector (a one-hot class label, a VAE latent), or
            ``None``.
        dropout: Dropout probability inside the gated blocks while training
            (``train()`` mode; scoring in ``eval()`` mode and generation go without it).

    Example:
        >>> pixelcnn = PixelCNN((1, 4, 4), num_levels=5, hidden_channels=8, num_layers=2)
        >>> d = pixelcnn()
        >>> y = d.sample((3,))
        >>> y.shape, d.log_prob(y).shape
        (torch.Size([3, 1, 4, 4]), torch.Size([3]))
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        num_levels: int,
        hidden_channels: int = 32,
        num_layers: int = 5,
        kernel_size: int = 3,
        output: str = "logistic_mixture",
        num_components: int = 5,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        shape = tuple(event_shape) if isinstance(event_shape, Sequence) else ()
        if len(shape) != 3 or any(
            isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in shape
        ):
            raise ValueError(
                f"event_shape: expected (C, H, W) of positive ints, got {event_shape!r}"
            )
        super().__init__(shape, num_levels, output, num_components, context_dim)
        self.network = PixelCNNNetwork(
            shape[0],
            self.num_params,
            hidden_channels=hidden_channels,
            num_layers=num_layers,
            kernel_size=kernel_size,
            context_dim=self.context_dim,
            dropout=dropout,
        )

    @property
    def receptive_field(self) -> tuple[int, int]:
        """``(rows above, columns either side)`` a pixel's conditional depends on (and the
        pixels to its left in its row, as far as the columns reach)."""
        return self.network.receptive_field

    def _generate(
        self,
        n: int,
        context: Tensor | None,
        choose: Callable[[Tensor, tuple[int, ...]], Tensor],
        method: str,
    ) -> Tensor:
        c, height, width = self.event_shape
        ref = self._reference()
        y = torch.zeros(n, c, height, width, dtype=ref.dtype, device=ref.device)
        if method == "naive":
            for i in range(height):
                for j in range(width):
                    for k in range(c):
                        params = self.network(self._scale_input(y), context)
                        y[:, k, i, j] = choose(params[:, :, k, i, j], (k, i, j))
            return y
        cache = self.network.cache(n, height, width, context)
        for i in range(height):
            cache.start_row(i)
            for j in range(width):
                for k in range(c):
                    value = choose(cache.pixel(i, j)[:, :, k], (k, i, j))
                    y[:, k, i, j] = value
                    cache.write(i, j, k, self._scale_input(value))
        return y


class WaveNet(AutoregressiveModule):
    r"""Causal dilated 1-D convolutions (WaveNet style) over integer sequences :math:`(C, T)`.

    .. math:: P(y \mid c) = \prod_{t=1}^{T} \prod_{k=1}^{C}
        P\big(y_{k,t} \mid y_{:,\,t-R:t},\, y_{<k,t},\, c\big),

    each conditional a mixture of discretized logistics or a categorical over the
    :math:`L` levels, predicted by :class:`~pyro_dgm.nn.WaveNetNetwork` whose
    receptive field :math:`R` (``receptive_field``: the earlier steps a step sees) is
    :math:`(k-1)(1 + \sum_l d_l)`. The dilations double, :math:`d_l = 2^{l \bmod m}`
    with the cycle :math:`m` = ``dilation_cycle``. Sequences have shape :math:`(C, T)`,
    :math:`C = 1` for one channel (like a one-channel image).

    Scoring: one pass, :math:`O(N F^2 k T)`. Sampling: :math:`CT` positions;
    ``method="cached"`` (ring buffers per layer, Paine et al., 2016) costs about one
    pass in total, ``"naive"`` reruns the network :math:`CT` times.

    References:
        | WaveNet: A Generative Model for Raw Audio (van den Oord et al., 2016)
        | https://arxiv.org/abs/1609.03499
        | Fast Wavenet Generation Algorithm (Paine et al., 2016)
        | https://arxiv.org/abs/1611.09482

    Arguments:
        event_shape: :math:`(C, T)`, or :math:`T` for one channel.
        num_levels: :math:`L \ge 2`.
        residual_channels: :math:`F` (a multiple of :math:`C`).
        num_layers: Gated dilated layers :math:`N`.
        dilation_cycle: :math:`m`; default :math:`\min(N, \lceil\log_2 T\rceil)`, so that
            the receptive field covers the sequence when :math:`N` allows it.
        kernel_size: :math:`k \ge 2`.
        skip_channels: Width of the skip connections (default :math:`F`).
        output: ``"logistic_mixture"`` or ``"categorical"``.
        num_components: :math:`K`, logistics per mixture.
        context_dim: Size of a context vector, or ``None``.
        dropout: Dropout probability on each layer's gated features while training
            (``train()`` mode; scoring in ``eval()`` mode and generation go without it).

    Example:
        >>> wavenet = WaveNet(64, num_levels=17, residual_channels=8, num_layers=6)
        >>> wavenet.receptive_field
        64
        >>> wavenet().sample((2,)).shape
        torch.Size([2, 1, 64])
    """

    def __init__(
        self,
        event_shape: Sequence[int] | int,
        num_levels: int,
        residual_channels: int = 32,
        num_layers: int = 10,
        dilation_cycle: int | None = None,
        kernel_size: int = 2,
        skip_channels: int | None = None,
        output: str = "logistic_mixture",
        num_components: int = 5,
        context_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        if isinstance(event_shape, Integral) and not isinstance(event_shape, bool):
            event_shape = (1, int(event_shape))
        shape = tuple(event_shape) if isinstance(event_shape, Sequence) else ()
        if len(shape) != 2 or any(
            isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in shape
        ):
            raise ValueError(
                f"event_shape: expected (C, T) or T, positive ints, got {event_shape!r}"
            )
        super().__init__(shape, num_levels, output, num_components, context_dim)
        layers = _check_int("num_layers", num_layers, 1)
        if dilation_cycle is None:
            dilation_cycle = max(1, min(layers, math.ceil(math.log2(max(shape[1], 2)))))
        cycle = _check_int("dilation_cycle", dilation_cycle, 1)
        self.network = WaveNetNetwork(
            shape[0],
            self.num_params,
            residual_channels=residual_channels,
            dilations=[2 ** (i % cycle) for i in range(layers)],
            kernel_size=kernel_size,
            skip_channels=skip_channels,
            context_dim=self.context_dim,
            dropout=dropout,
        )

    @property
    def receptive_field(self) -> int:
        r""":math:`R`: step :math:`t`'s conditional depends on steps :math:`t-R, \dots, t-1`."""
        return self.network.receptive_field

    def _generate(
        self,
        n: int,
        context: Tensor | None,
        choose: Callable[[Tensor, tuple[int, ...]], Tensor],
        method: str,
    ) -> Tensor:
        c, length = self.event_shape
        ref = self._reference()
        y = torch.zeros(n, c, length, dtype=ref.dtype, device=ref.device)
        if method == "naive":
            for t in range(length):
                for k in range(c):
                    params = self.network(self._scale_input(y), context)
                    y[:, k, t] = choose(params[:, :, k, t], (k, t))
            return y
        cache = self.network.cache(n, context)
        for t in range(length):
            x_t = torch.zeros(n, c, dtype=ref.dtype, device=ref.device)
            for k in range(c):
                value = choose(cache.step(x_t)[:, :, k], (k, t))
                y[:, k, t] = value
                x_t[:, k] = self._scale_input(value)
            cache.commit(x_t)
        return y
