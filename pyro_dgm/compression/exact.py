r"""Exact coding of models with a tractable likelihood: :math:`-\log_2 P(y)` bits, plus a few.

:class:`SequentialCodec` codes a :class:`~.conditionals.LevelConditionals` model
(PixelCNN, WaveNet, or one's own) in its autoregressive order; :class:`FactorizedCodec`
codes a factorized distribution (the discretized ones, ``Bernoulli``, ...). Both use
constriction's range coder, a queue: the values are written in the order they are read,
so encoding streams through the data and needs no memory beyond one block.

*Encoder and decoder compute the same conditionals.* Decoding can only run the
incremental loop (:meth:`~pyro_dgm.distributions.AutoregressiveModule.generate` with
the cached network), and its parameters differ from those of one parallel network
pass in the last bits (about 1e-16 for a float64 PixelCNN): a single count rounded the
other way would decode garbage. So encoding runs the same loop with the known values
(teacher forcing), on the same blocks of data points, and both sides see identical
floating-point numbers. Encoding and decoding then cost about what cached sampling
costs; the model's ``log_prob`` (one parallel pass) remains the way to score.

*Numerics and devices.* A module is copied to float64 on the CPU for coding (the
conditionals do not depend on the device the model was trained on); a distribution is
scored where its parameters are and its tables moved to the CPU in float64. The same
software on the same kind of machine computes the same bits; other CPU math libraries
(or GPU kernels, for a distribution on a GPU) may differ in the last bit, so encode and
decode with the same device type, dtype and build. A mismatch is caught by the data
checksum of the container (a ``ValueError``), never returned as wrong values.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..utils.checks import check_int
from .backend import require_constriction
from .conditionals import LevelConditionals, factorized_log_probs
from .container import fingerprint
from .quantize import PRECISION, free_weights

__all__ = ["Codec", "FactorizedCodec", "SequentialCodec", "check_exhausted", "float64_copy"]

#: ``sink(log_probs, start, stop, position) -> values``: what the loop does at a position.
Sink = Callable[[Tensor, int, int, tuple[int, ...]], Tensor]


def float64_copy(model: object) -> object:
    """A copy of a module in float64 on the CPU, in eval mode (other objects as they are).

    Example:
        >>> net = nn.Linear(2, 1)
        >>> copy64 = float64_copy(net)
        >>> copy64.weight.dtype, net.weight.dtype, copy64.training
        (torch.float64, torch.float32, False)
        >>> d = object()
        >>> float64_copy(d) is d
        True
    """
    if not isinstance(model, nn.Module):
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()


def check_exhausted(decoder: Any) -> None:
    """Refuse words left over after the last value: the file holds more than was written.

    Example:
        >>> constriction = require_constriction()
        >>> family = constriction.stream.model.Categorical(perfect=False)
        >>> weights = free_weights(torch.zeros(2, 4))  # two uniform conditionals
        >>> encoder = constriction.stream.queue.RangeEncoder()
        >>> encoder.encode(np.array([1, 2], dtype=np.int32), family, weights)
        >>> words = encoder.get_compressed()
        >>> decoder = constriction.stream.queue.RangeDecoder(words)
        >>> decoder.decode(family, weights), check_exhausted(decoder)
        (array([1, 2], dtype=int32), None)
        >>> padded = np.concatenate([words, np.array([7, 7], dtype=np.uint32)])
        >>> decoder = constriction.stream.queue.RangeDecoder(padded)
        >>> _ = decoder.decode(family, weights)
        >>> check_exhausted(decoder)
        Traceback (most recent call last):
        ...
        ValueError: data: words are left over after the last value: ...
    """
    if not decoder.maybe_exhausted():
        raise ValueError(
            "data: words are left over after the last value: the context differs from the "
            "encoder's, or the file is damaged"
        )


class Codec:
    """What the container needs from a codec: its kind and coder, the model's levels, event
    shape and fingerprint, and the words of a stream in both directions.

    Example:
        >>> import pyro.distributions as dist
        >>> codec = FactorizedCodec(dist.Bernoulli(probs=torch.full((3,), 0.5)).to_event(1))
        >>> isinstance(codec, Codec), codec.kind, codec.coder, codec.num_levels
        (True, 'factorized', 'range', 2)
        >>> codec.check_shape((5, 4))
        Traceback (most recent call last):
        ...
        ValueError: x: expected shape (N, 3) (the distribution is one data point's) or ...
    """

    kind: str
    coder: str
    num_levels: int
    event_shape: torch.Size
    fingerprint: bytes

    def encode_words(self, values: Tensor) -> tuple[np.ndarray, dict[str, int]]:
        """The ``uint32`` words of ``values`` ``(N, *event_shape)`` (int64) and the header
        fields the decoder needs."""
        raise NotImplementedError

    def decode_words(self, words: np.ndarray, shape: tuple[int, ...], **fields: int) -> Tensor:
        """The int64 values of shape ``shape`` that ``words`` hold."""
        raise NotImplementedError

    def code_lengths(self, values: Tensor) -> Tensor:
        """Bits per data point ``(N,)`` that the coder charges (before its final flush)."""
        raise NotImplementedError

    def check_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 1 + len(self.event_shape) or tuple(shape[1:]) != tuple(self.event_shape):
            raise ValueError(
                f"x: expected shape (N, {', '.join(map(str, self.event_shape))}), got {shape}"
            )


class SequentialCodec(Codec):
    r"""Codes a sequential model (a :class:`~.conditionals.LevelConditionals`) with
    constriction's range coder, in the model's order.

    .. math:: \text{bits}(y) = \sum_{d=1}^D -\log_2 \frac{c_{y_d}(y_{<d})}{2^{24}}
        \approx -\log_2 P(y),

    the counts :math:`c` quantized from ``level_log_probs`` at every position. The data
    points go through ``generate`` in blocks of ``block_size`` (the decoder uses the same
    blocks, so the same batched arithmetic). Cost: one cached generation pass, plus a
    quantization and a coder call per position and block.

    Arguments:
        model: The sequential model (a module is coded through a float64 CPU copy).
        context: ``(N, context_dim)`` contexts of the data points, or ``None``.
        block_size: Data points per block.

    Example:
        >>> from pyro_dgm.distributions import PixelCNN
        >>> pixelcnn = PixelCNN((1, 2, 2), num_levels=4, hidden_channels=4, num_layers=1)
        >>> x = torch.randint(0, 4, (3, 1, 2, 2))
        >>> codec = SequentialCodec(pixelcnn, block_size=2)  # blocks of 2 and 1
        >>> words, fields = codec.encode_words(x)
        >>> fields
        {'block_size': 2}
        >>> torch.equal(codec.decode_words(words, tuple(x.shape), **fields), x)
        True
    """

    kind = "autoregressive"
    coder = "range"

    def __init__(
        self, model: LevelConditionals, context: Tensor | None = None, block_size: int = 256
    ) -> None:
        self.num_levels = check_int(model.num_levels, "model.num_levels", 2)
        self.event_shape = torch.Size(model.event_shape)
        self.block_size = check_int(block_size, "block_size", 1)
        settings = tuple(getattr(model, a, None) for a in ("output", "num_components"))
        self.fingerprint = fingerprint(model, tuple(self.event_shape), self.num_levels, settings)
        self.model = float64_copy(model)
        if context is not None:
            if not isinstance(context, Tensor) or not context.is_floating_point():
                raise ValueError(
                    f"context: expected a floating tensor (N, ...), got {context!r:.60}"
                )
            context = context.detach().to(device="cpu", dtype=torch.float64)
        self.context = context

    def _run(self, n_total: int, block_size: int, sink: Sink) -> Tensor:
        if self.context is not None and len(self.context) != n_total:
            raise ValueError(
                f"context: expected {n_total} contexts (one per data point), got "
                f"{len(self.context)}"
            )
        out = []
        for start in range(0, n_total, block_size):
            stop = min(n_total, start + block_size)
            context = None if self.context is None else self.context[start:stop]

            def choose(
                params: Tensor, position: tuple[int, ...], start: int = start, stop: int = stop
            ) -> Tensor:
                log_p = self.model.level_log_probs(params)
                if tuple(log_p.shape) != (stop - start, self.num_levels):
                    raise ValueError(
                        f"model.level_log_probs: expected shape ({stop - start}, "
                        f"{self.num_levels}), got {tuple(log_p.shape)}"
                    )
                return sink(log_p, start, stop, position)

            out.append(self.model.generate(stop - start, context, choose))
        return torch.cat(out).to(torch.int64)

    def encode_words(self, values: Tensor) -> tuple[np.ndarray, dict[str, int]]:
        self.check_shape(tuple(values.shape))
        constriction = require_constriction()
        encoder = constriction.stream.queue.RangeEncoder()
        family = constriction.stream.model.Categorical(perfect=False)

        def sink(log_p: Tensor, start: int, stop: int, position: tuple[int, ...]) -> Tensor:
            symbols = values[(slice(start, stop), *position)]
            encoder.encode(symbols.numpy().astype(np.int32), family, free_weights(log_p))
            return symbols

        self._run(len(values), self.block_size, sink)
        return encoder.get_compressed(), {"block_size": self.block_size}

    def decode_words(self, words: np.ndarray, shape: tuple[int, ...], **fields: int) -> Tensor:
        self.check_shape(shape)
        constriction = require_constriction()
        decoder = constriction.stream.queue.RangeDecoder(words)
        family = constriction.stream.model.Categorical(perfect=False)

        def sink(log_p: Tensor, start: int, stop: int, position: tuple[int, ...]) -> Tensor:
            return torch.from_numpy(decoder.decode(family, free_weights(log_p)).astype(np.int64))

        values = self._run(shape[0], check_int(fields["block_size"], "block_size", 1), sink)
        check_exhausted(decoder)
        return values

    def code_lengths(self, values: Tensor) -> Tensor:
        self.check_shape(tuple(values.shape))
        bits = torch.zeros(len(values), dtype=torch.float64)

        def sink(log_p: Tensor, start: int, stop: int, position: tuple[int, ...]) -> Tensor:
            symbols = values[(slice(start, stop), *position)]
            counts = torch.from_numpy(free_weights(log_p)) + 1
            picked = counts.gather(1, symbols.reshape(-1, 1)).squeeze(1)
            bits[start:stop] += PRECISION - torch.log2(picked)
            return symbols

        self._run(len(values), self.block_size, sink)
        return bits


class FactorizedCodec(Codec):
    r"""Codes a factorized distribution over the levels with constriction's range coder.

    .. math:: \text{bits}(y) = \sum_i -\log_2 \frac{c_{i, y_i}}{2^{24}} \approx -\log_2 P(y),

    one quantized table per coordinate, computed once. The distribution's shape
    (``batch_shape + event_shape``) is that of one data point, shared by every data point
    coded, or that of the whole data ``(N, ...)`` (a distribution per data point, e.g. a
    decoder's output). Its fingerprint is that of its quantized tables: two distributions
    that code alike are alike.

    Arguments:
        d: The distribution (see :func:`~.conditionals.factorized_log_probs`).
        block_size: Data points per coder call.

    Example:
        >>> import pyro.distributions as dist
        >>> d = dist.Bernoulli(probs=torch.tensor([0.5, 0.25])).to_event(1)
        >>> codec = FactorizedCodec(d)
        >>> x = torch.tensor([[1, 0], [0, 1]])
        >>> words, fields = codec.encode_words(x)
        >>> torch.equal(codec.decode_words(words, tuple(x.shape), **fields), x)
        True
        >>> codec.code_lengths(x)  # 1 + log2(4/3) bits, then 1 + 2 bits
        tensor([1.4150, 3.0000], dtype=torch.float64)
    """

    kind = "factorized"
    coder = "range"

    def __init__(self, d: Distribution, block_size: int = 256) -> None:
        log_probs, levels = factorized_log_probs(d)
        self.num_levels = levels
        self.shape = torch.Size(log_probs.shape[:-1])
        self.block_size = check_int(block_size, "block_size", 1)
        self.free = free_weights(log_probs.reshape(-1, levels))
        self.fingerprint = fingerprint(
            d, tuple(self.shape), levels, tensors=[("counts", torch.from_numpy(self.free))]
        )
        self.event_shape = self.shape

    def check_shape(self, shape: tuple[int, ...]) -> None:
        if tuple(shape[1:]) != tuple(self.shape) and tuple(shape) != tuple(self.shape):
            dims = ", ".join(map(str, self.shape))
            raise ValueError(
                f"x: expected shape (N, {dims}) (the distribution is one data point's) or "
                f"({dims}) (one distribution per data point), got {shape}"
            )

    def _tables(self, shape: tuple[int, ...], start: int, stop: int) -> np.ndarray:
        per_point = tuple(shape) == tuple(self.shape)
        dims = math.prod(shape[1:])
        if per_point:
            return self.free[start * dims : stop * dims]
        return np.tile(self.free, (stop - start, 1))

    def encode_words(self, values: Tensor) -> tuple[np.ndarray, dict[str, int]]:
        self.check_shape(tuple(values.shape))
        constriction = require_constriction()
        encoder = constriction.stream.queue.RangeEncoder()
        family = constriction.stream.model.Categorical(perfect=False)
        shape = tuple(values.shape)
        for start in range(0, shape[0], self.block_size):
            stop = min(shape[0], start + self.block_size)
            symbols = values[start:stop].reshape(-1).numpy().astype(np.int32)
            encoder.encode(symbols, family, self._tables(shape, start, stop))
        return encoder.get_compressed(), {"block_size": self.block_size}

    def decode_words(self, words: np.ndarray, shape: tuple[int, ...], **fields: int) -> Tensor:
        self.check_shape(shape)
        constriction = require_constriction()
        decoder = constriction.stream.queue.RangeDecoder(words)
        family = constriction.stream.model.Categorical(perfect=False)
        block = check_int(fields["block_size"], "block_size", 1)
        out = []
        for start in range(0, shape[0], block):
            stop = min(shape[0], start + block)
            out.append(decoder.decode(family, self._tables(shape, start, stop)))
        check_exhausted(decoder)
        return torch.from_numpy(np.concatenate(out).astype(np.int64)).reshape(shape)

    def code_lengths(self, values: Tensor) -> Tensor:
        self.check_shape(tuple(values.shape))
        shape = tuple(values.shape)
        counts = torch.from_numpy(self._tables(shape, 0, shape[0])) + 1
        picked = counts.gather(1, values.reshape(-1, 1)).squeeze(1)
        return (PRECISION - torch.log2(picked)).reshape(shape[0], -1).sum(-1)
