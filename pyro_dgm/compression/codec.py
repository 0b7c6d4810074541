r"""Encode and decode data with a model: the entry points of :mod:`pyro_dgm.compression`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from ..distributions.autoregressive import AutoregressiveDistribution
from ..models import (
    VAE,
    AutoregressiveModel,
    UniformDequantization,
    VariationalDequantization,
)
from ..utils.checks import check_int
from .bitsback import LATENT_BITS, BitsBackCodec
from .conditionals import LevelConditionals
from .container import Header, data_checksum, pack, payload_words, read_header
from .exact import Codec, FactorizedCodec, SequentialCodec

__all__ = [
    "Measurement",
    "code_lengths",
    "compress_file",
    "decode",
    "decompress_file",
    "encode",
    "measure",
]

_DEQUANTIZATION_REASON = (
    "a dequantization pair is not a discrete model with per-dimension conditionals: "
    "P(y) = integral of p_W(y + u) du over the cell [0, 1)^D, and its flow density p_W is "
    "joint over all D coordinates. Coding y with bits back would pop u from q(u | y) and then "
    "push y + u under p_W, which needs p_W's conditionals one coordinate at a time (or local "
    "bits-back coding of the flow's Jacobian, Ho et al., 2019): not available for a general "
    "flow. Compress with an exact model (PixelCNN, WaveNet, a discretized distribution) or a "
    "VAE instead"
)


def _codec(model: Any, context: Tensor | None, block_size: int, latent_bits: int) -> Codec:
    """The codec of ``model``; the contexts are those of the data points."""
    if isinstance(model, (UniformDequantization, VariationalDequantization)):
        raise ValueError(f"model: {type(model).__name__}: {_DEQUANTIZATION_REASON}")
    if isinstance(model, VAE):
        if context is not None:
            raise ValueError("context: a VAE takes no context, got one")
        return BitsBackCodec(model, latent_bits)
    if isinstance(model, AutoregressiveModel):
        model = model.module
    if isinstance(model, AutoregressiveDistribution):
        if model.context is not None:
            if context is not None:
                raise ValueError("context: the distribution holds its context; got another one")
            if model.context.dim() != 2:
                raise ValueError(
                    "model: expected the distribution of N data points (a context of shape "
                    f"(N, context_dim)), got a context of shape {tuple(model.context.shape)}"
                )
            context = model.context
        model = model.module
    if isinstance(model, Distribution):
        if context is not None:
            raise ValueError(f"context: a {type(model).__name__} takes no context, got one")
        return FactorizedCodec(model, block_size)
    if isinstance(model, LevelConditionals):
        return SequentialCodec(model, context, block_size)
    raise ValueError(
        "model: expected a PixelCNN or WaveNet (module, distribution or AutoregressiveModel "
        "pair), a factorized discrete distribution (Discretized, DiscretizedLogistic, "
        "DiscretizedLogisticMixture, Bernoulli, Categorical, ... with .to_event), a "
        "LevelConditionals model, or a VAE; got "
        f"{type(model).__name__}"
    )


def _values(x: Any, num_levels: int) -> tuple[Tensor, str]:
    """``x`` as an int64 CPU tensor of levels, and its numpy dtype string."""
    if isinstance(x, np.ndarray):
        dtype = x.dtype
        if dtype.kind not in "biuf":
            raise ValueError(f"x: expected an array of integer levels, got dtype {dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, Tensor):
        if x.is_complex():
            raise ValueError(f"x: expected real values, got dtype {x.dtype}")
        t = x.detach().to("cpu")
        dtype = t.new_empty(0).numpy().dtype if t.dtype != torch.bfloat16 else np.dtype("<f4")
    else:
        raise ValueError(f"x: expected a Tensor or a numpy array, got {type(x).__name__}")
    if t.dim() < 2 or len(t) == 0:
        raise ValueError(f"x: expected a batch (N, ...) with N >= 1, got shape {tuple(t.shape)}")
    wide = t.double() if t.is_floating_point() else t.long()
    ok = (wide >= 0) & (wide <= num_levels - 1)
    if t.is_floating_point():
        ok &= wide == wide.floor()
    if not bool(ok.all()):
        bad = wide[~ok].unique()[:8].tolist()
        raise ValueError(
            f"x: expected integers in {{0, ..., {num_levels - 1}}} (the model's levels), got {bad}"
        )
    return wide.long(), dtype.str


def encode(
    model: Any,
    x: Tensor | np.ndarray,
    *,
    context: Tensor | None = None,
    block_size: int = 256,
    latent_bits: int = LATENT_BITS,
) -> bytes:
    r"""Compress integer data ``x`` with ``model`` losslessly: the container's bytes.

    .. math:: \text{bytes} \approx \frac{1}{8}\Big(-\log_2 P(x)\Big) + \text{header},

    exactly for a model with a tractable likelihood (PixelCNN, WaveNet, a factorized
    discretized distribution: range coding in the model's order), and
    :math:`-\mathrm{ELBO}/\log 2` on average for a VAE (bits-back coding with ANS, plus
    the initial bits). See the package docstring for what is supported and the device
    caveat.

    Arguments:
        model: A :class:`~pyro_dgm.models.AutoregressiveModel` pair, a
            :class:`~pyro_dgm.distributions.PixelCNN` or
            :class:`~pyro_dgm.distributions.WaveNet` (or the distribution it returns for
            a context), a factorized discrete distribution, a
            :class:`~.conditionals.LevelConditionals` model, or a
            :class:`~pyro_dgm.models.VAE`.
        x: ``(N, *event_shape)`` integers in :math:`\{0, \dots, L-1\}` (a tensor, floats
            holding integers allowed, or a numpy array).
        context: ``(N, context_dim)`` contexts of a conditional autoregressive model.
        block_size: Data points an exact model codes together (the decoder uses the
            same blocks; memory grows with it).
        latent_bits: Bits per latent coordinate of bits-back coding.

    Returns:
        The compressed bytes (:func:`read_header` reads their header).

    Raises:
        ImportError: constriction is not installed (``pip install pyro-dgm[compress]``).
        ValueError: An unsupported model, or data of the wrong shape or levels.

    Example:
        >>> from pyro_dgm.distributions import PixelCNN
        >>> pixelcnn = PixelCNN((1, 4, 4), num_levels=5, hidden_channels=8, num_layers=1)
        >>> x = pixelcnn().sample((10,))
        >>> data = encode(pixelcnn, x)
        >>> torch.equal(decode(pixelcnn, data), x), read_header(data).kind
        (True, 'autoregressive')
    """
    codec = _codec(model, context, check_int(block_size, "block_size", 1), latent_bits)
    values, dtype = _values(x, codec.num_levels)
    codec.check_shape(tuple(values.shape))
    words, fields = codec.encode_words(values)
    header = Header(
        kind=codec.kind,
        coder=codec.coder,
        fingerprint=codec.fingerprint,
        checksum=data_checksum(values),
        num_levels=codec.num_levels,
        dtype=dtype,
        shape=tuple(values.shape),
        **fields,
    )
    return pack(header, words)


def _decode_values(
    model: Any, data: bytes, shape: tuple[int, ...] | None, context: Tensor | None
) -> tuple[Tensor, Header]:
    header = read_header(data)
    block = header.block_size if header.block_size else 256
    codec = _codec(model, context, block, header.latent_bits or LATENT_BITS)
    if codec.kind != header.kind:
        raise ValueError(
            f"data: written by the {header.kind} coder; this model is coded by the "
            f"{codec.kind} coder ({type(model).__name__})"
        )
    if codec.num_levels != header.num_levels:
        raise ValueError(
            f"data: encoded with {header.num_levels} levels; this model has {codec.num_levels}"
        )
    if shape is not None and tuple(shape) != header.shape:
        raise ValueError(f"shape: the data have shape {header.shape}, got {tuple(shape)}")
    codec.check_shape(header.shape)
    if codec.fingerprint != header.fingerprint:
        raise ValueError(
            "data: encoded with a different model (fingerprint "
            f"{header.fingerprint.hex()} in the header, {codec.fingerprint.hex()} for this "
            f"{type(model).__name__}): decode with the model that encoded it"
        )
    values = codec.decode_words(
        payload_words(data, header),
        header.shape,
        block_size=header.block_size,
        latent_bits=header.latent_bits,
        initial_words=header.initial_words,
    )
    if data_checksum(values) != header.checksum:
        raise ValueError(
            "data: the decoded values do not match the checksum of the header: the context "
            "differs from the encoder's, the file is damaged, or it was encoded with other "
            "software or hardware (CPU math libraries and GPU kernels can differ in the last "
            "bit; encode and decode on the same device type with the same build)"
        )
    return values, header


def decode(
    model: Any,
    data: bytes,
    shape: tuple[int, ...] | None = None,
    *,
    context: Tensor | None = None,
) -> Tensor:
    """Decompress what :func:`encode` wrote, with the same model (and context).

    Arguments:
        model: The model that encoded the data.
        data: The bytes.
        shape: The expected shape ``(N, *event_shape)``, checked against the header
            (``None``: the header's).
        context: The contexts the data were encoded with.

    Returns:
        The data, with the dtype they were encoded from.

    Raises:
        ValueError: Another model, shape, number of levels, context or format version,
            or a damaged file: never wrong values.

    Example:
        >>> import pyro.distributions as dist
        >>> d = dist.Categorical(logits=torch.zeros(4)).expand([3]).to_event(1)
        >>> x = torch.tensor([[0, 1, 3], [2, 2, 2]], dtype=torch.uint8)
        >>> decode(d, encode(d, x))  # the values and their dtype
        tensor([[0, 1, 3],
                [2, 2, 2]], dtype=torch.uint8)
        >>> decode(d, encode(d, x), shape=(3, 3))
        Traceback (most recent call last):
        ...
        ValueError: shape: the data have shape (2, 3), got (3, 3)
    """
    values, header = _decode_values(model, data, shape, context)
    dtype = torch.from_numpy(np.empty(0, dtype=header.dtype)).dtype
    return values.to(dtype)


def compress_file(pair: Any, array: np.ndarray, **kwargs: Any) -> bytes:
    """The compressed bytes of an integer numpy array (e.g. the contents of an ``.npy``),
    for a run's pair: :func:`encode` for numpy (``kwargs`` are its keywords).

    Example:
        >>> import numpy as np
        >>> import pyro.distributions as dist
        >>> d = dist.Categorical(logits=torch.zeros(4)).expand([3]).to_event(1)
        >>> array = np.array([[0, 1, 3], [2, 2, 2]], dtype=np.uint8)
        >>> blob = compress_file(d, array)
        >>> read_header(blob).dtype, read_header(blob).shape
        ('|u1', (2, 3))
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f"array: expected a numpy array, got {type(array).__name__}")
    if array.dtype.kind not in "biu":
        raise ValueError(f"array: expected an integer numpy array, got dtype {array.dtype}")
    return encode(pair, array, **kwargs)


def decompress_file(pair: Any, data: bytes, **kwargs: Any) -> np.ndarray:
    """The numpy array that :func:`compress_file` compressed, with its dtype.

    Example:
        >>> import numpy as np
        >>> import pyro.distributions as dist
        >>> d = dist.Categorical(logits=torch.zeros(4)).expand([3]).to_event(1)
        >>> array = np.array([[0, 1, 3], [2, 2, 2]], dtype=np.int16)
        >>> back = decompress_file(d, compress_file(d, array))
        >>> bool((back == array).all()), back.dtype
        (True, dtype('int16'))
    """
    values, header = _decode_values(pair, data, None, kwargs.pop("context", None))
    if kwargs:
        raise ValueError(f"decompress_file: unexpected keywords {sorted(kwargs)}")
    return values.numpy().astype(np.dtype(header.dtype))


def code_lengths(
    model: Any,
    x: Tensor | np.ndarray,
    *,
    context: Tensor | None = None,
    block_size: int = 256,
    latent_bits: int = LATENT_BITS,
) -> Tensor:
    r"""Bits each data point costs in the stream :func:`encode` writes, ``(N,)`` float64.

    For an exact model, :math:`\sum_d -\log_2(c_{x_d} / 2^{24})` under the quantized
    conditionals (no coder runs; the stream's payload is their sum plus the coder's final
    flush, at most a few 32-bit words). For a VAE, the net growth of the ANS stack per
    data point (the first data point's includes the initial bits it borrowed).

    Arguments:
        model: A model :func:`encode` takes.
        x: ``(N, *event_shape)`` integer levels.
        context: ``(N, context_dim)`` contexts of a conditional autoregressive model.
        block_size: Data points an exact model codes together.
        latent_bits: Bits per latent coordinate of bits-back coding.

    Example:
        >>> import pyro.distributions as dist
        >>> d = dist.Categorical(logits=torch.zeros(4)).expand([3]).to_event(1)
        >>> code_lengths(d, torch.tensor([[0, 1, 3], [2, 2, 2]]))  # 2 bits a level of 4
        tensor([6., 6.], dtype=torch.float64)
    """
    codec = _codec(model, context, check_int(block_size, "block_size", 1), latent_bits)
    values, _ = _values(x, codec.num_levels)
    return codec.code_lengths(values)


@dataclass(frozen=True)
class Measurement:
    r"""The size of a compressed data set, what :func:`measure` returns.

    Attributes:
        num_points: :math:`N`.
        num_dims: Dimensions of one data point.
        total_bytes: The file.
        header_bytes: Its header.
        initial_bits: Initial bits in the payload (bits-back; 0 for exact models).
        round_trip: Whether decoding gave the data back exactly (``None``: not checked).

    .. math:: \text{bits/dim} = \frac{8\,(\text{total bytes} - \text{header bytes})}
        {N \cdot D}

    Example:
        >>> m = Measurement(num_points=2, num_dims=3, total_bytes=66, header_bytes=62,
        ...                 initial_bits=0, round_trip=True)
        >>> m.payload_bits, round(m.bits_per_dim, 4), m.bits_per_dim_with_header
        (32, 5.3333, 88.0)
    """

    num_points: int
    num_dims: int
    total_bytes: int
    header_bytes: int
    initial_bits: int
    round_trip: bool | None

    @property
    def payload_bits(self) -> int:
        return 8 * (self.total_bytes - self.header_bytes)

    @property
    def bits_per_dim(self) -> float:
        """Payload bits (header excluded, initial bits included) per dimension."""
        return self.payload_bits / (self.num_points * self.num_dims)

    @property
    def bits_per_dim_with_header(self) -> float:
        """The whole file's bits per dimension."""
        return 8 * self.total_bytes / (self.num_points * self.num_dims)

    @property
    def net_bits_per_dim(self) -> float:
        """Payload bits less the initial bits, per dimension (what BB-ANS's rate is)."""
        return (self.payload_bits - self.initial_bits) / (self.num_points * self.num_dims)

    def __str__(self) -> str:
        rt = {None: "not checked", True: "exact", False: "FAILED"}[self.round_trip]
        return (
            f"{self.total_bytes} bytes for {self.num_points} x {self.num_dims} values: "
            f"{self.bits_per_dim:.4f} bits/dim written ({self.bits_per_dim_with_header:.4f} "
            f"with the header, {self.net_bits_per_dim:.4f} net of initial bits); "
            f"round trip {rt}"
        )


def measure(
    model: Any,
    x: Tensor | np.ndarray,
    *,
    context: Tensor | None = None,
    verify: bool = True,
    **kwargs: Any,
) -> Measurement:
    """Compress ``x`` and report the file's size per dimension (and, with ``verify``,
    decode it and check the round trip): the measured code length beside a bits/dim.

    Arguments:
        model: A model :func:`encode` takes.
        x: ``(N, *event_shape)`` integer levels.
        context: ``(N, context_dim)`` contexts of a conditional autoregressive model.
        verify: Decode the file and compare it with ``x``.
        kwargs: :func:`encode`'s ``block_size`` and ``latent_bits``.

    Example:
        >>> import pyro.distributions as dist
        >>> d = dist.Categorical(logits=torch.zeros(4)).expand([3]).to_event(1)
        >>> m = measure(d, torch.tensor([[0, 1, 3], [2, 2, 2]]))
        >>> m.round_trip, m.total_bytes, m.header_bytes  # 12 bits of payload: one word
        (True, 66, 62)
        >>> print(m)
        66 bytes for 2 x 3 values: 5.3333 bits/dim written (88.0000 with the header, ...
    """
    data = encode(model, x, context=context, **kwargs)
    header = read_header(data)
    round_trip = None
    if verify:
        values, _ = _decode_values(model, data, None, context)
        round_trip = bool(torch.equal(values, _values(x, header.num_levels)[0]))
    return Measurement(
        num_points=header.shape[0],
        num_dims=math.prod(header.shape[1:]),
        total_bytes=len(data),
        header_bytes=header.size,
        initial_bits=32 * header.initial_words,
        round_trip=round_trip,
    )
