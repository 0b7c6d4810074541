r"""The file format: a small binary header, then the coder's 32-bit words.

=================  =======  ==============================================================
field              bytes    content
=================  =======  ==============================================================
magic              4        ``b"PDGM"``
version            1        :data:`FORMAT_VERSION`
kind               1        ``autoregressive`` | ``factorized`` | ``bits-back``
coder              1        ``range`` (constriction's range coder, a queue) | ``ans``
                            (its ANS coder, a stack)
precision          1        bits of the quantized probabilities (24)
fingerprint        16       BLAKE2b of the model: its class, shapes, levels and every tensor
                            of its ``state_dict`` (or of its probability tables)
checksum           8        BLAKE2b of the data (values and shape)
num_levels         4        :math:`L`
dtype              4        the data's numpy dtype (``"|u1"``, ``"<i8"``, ...)
ndim, shape        1 + 4k   the data's shape :math:`(N, \dots)`
block_size         4        data points coded together (autoregressive and factorized)
latent_bits        1        bits per latent dimension (bits-back)
initial_words      4        32-bit words of initial bits on the stack (bits-back)
payload_words      4        the number of payload words that follow
payload            4 each   the coder's words, little-endian
=================  =======  ==============================================================

All integers are little-endian. Decoding checks the magic, the version, the kind,
the fingerprint, the shape and the levels before it decodes anything, and the
checksum after: a wrong model, shape, level count or context, and a damaged file,
give a ``ValueError``, never wrong values.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "CODERS",
    "FORMAT_VERSION",
    "KINDS",
    "MAGIC",
    "Header",
    "data_checksum",
    "fingerprint",
    "read_header",
]

MAGIC = b"PDGM"
#: The version of the format this module writes and reads.
FORMAT_VERSION = 1
KINDS = ("autoregressive", "factorized", "bits-back")
CODERS = ("range", "ans")

_FIXED = struct.Struct("<4sBBBB16s8sI4sB")
_TAIL = struct.Struct("<IBII")


@dataclass(frozen=True)
class Header:
    """What a compressed file says about itself (:func:`read_header` reads it).

    Attributes:
        kind: ``"autoregressive"``, ``"factorized"`` or ``"bits-back"``.
        coder: ``"range"`` or ``"ans"``.
        fingerprint: 16 bytes identifying the model.
        checksum: 8 bytes identifying the data.
        num_levels: :math:`L`.
        dtype: The numpy dtype string of the data.
        shape: The data's shape, ``(N, *event_shape)``.
        block_size: Data points coded together (0 for bits-back).
        latent_bits: Bits per latent dimension (bits-back; else 0).
        initial_words: 32-bit words of initial bits (bits-back; else 0).
        payload_words: 32-bit words of the payload.
        precision: Bits of the quantized probabilities.
        version: The format version.

    Example:
        >>> import pyro.distributions as dist
        >>> from pyro_dgm.compression import encode
        >>> d = dist.Categorical(logits=torch.zeros(4)).expand([3]).to_event(1)
        >>> header = read_header(encode(d, torch.tensor([[0, 1, 3], [2, 2, 2]])))
        >>> header.kind, header.coder, header.shape, header.num_levels, header.dtype
        ('factorized', 'range', (2, 3), 4, '<i8')
        >>> header.size, header.payload_bytes
        (62, 4)
    """

    kind: str
    coder: str
    fingerprint: bytes
    checksum: bytes
    num_levels: int
    dtype: str
    shape: tuple[int, ...]
    block_size: int = 0
    latent_bits: int = 0
    initial_words: int = 0
    precision: int = 24
    version: int = FORMAT_VERSION
    payload_words: int = 0

    @property
    def size(self) -> int:
        """Bytes of the header."""
        return _FIXED.size + 4 * len(self.shape) + _TAIL.size

    @property
    def payload_bytes(self) -> int:
        """Bytes of the payload."""
        return 4 * self.payload_words

    def pack(self) -> bytes:
        dtype = self.dtype.encode("ascii")
        if len(dtype) > 4:
            raise ValueError(f"dtype: expected a numpy dtype string of 4 characters at most, "
                             f"got {self.dtype!r}")  # fmt: skip
        fixed = _FIXED.pack(
            MAGIC,
            self.version,
            KINDS.index(self.kind),
            CODERS.index(self.coder),
            self.precision,
            self.fingerprint,
            self.checksum,
            self.num_levels,
            dtype.ljust(4, b"\0"),
            len(self.shape),
        )
        shape = struct.pack(f"<{len(self.shape)}I", *self.shape)
        tail = _TAIL.pack(
            self.block_size, self.latent_bits, self.initial_words, self.payload_words
        )
        return fixed + shape + tail


def read_header(data: bytes) -> Header:
    """The :class:`Header` of a compressed file, checked for its magic, its version and the
    length of its payload.

    Raises:
        ValueError: Not a pyro_dgm file, another format version, or a truncated file.

    Example:
        >>> import pyro.distributions as dist
        >>> from pyro_dgm.compression import encode
        >>> d = dist.Categorical(logits=torch.zeros(4)).expand([3]).to_event(1)
        >>> data = encode(d, torch.tensor([[0, 1, 3]]))
        >>> read_header(data).version
        1
        >>> read_header(data[:-1])
        Traceback (most recent call last):
        ...
        ValueError: data: the header announces a payload of 4 bytes, the file holds 3: ...
        >>> read_header(b"GIF89a")
        Traceback (most recent call last):
        ...
        ValueError: data: not a pyro_dgm compressed file (expected the magic b'PDGM', got b'GIF8')
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _FIXED.size or data[:4] != MAGIC:
        raise ValueError(
            f"data: not a pyro_dgm compressed file (expected the magic {MAGIC!r}, got "
            f"{data[:4]!r})"
        )
    _, version, kind, coder, precision, finger, checksum, levels, dtype, ndim = _FIXED.unpack_from(
        data
    )
    if version != FORMAT_VERSION:
        raise ValueError(
            f"data: format version {version} is not supported (this pyro_dgm reads version "
            f"{FORMAT_VERSION})"
        )
    end = _FIXED.size + 4 * ndim + _TAIL.size
    if len(data) < end or kind >= len(KINDS) or coder >= len(CODERS):
        raise ValueError("data: the header is truncated or damaged")
    shape = struct.unpack_from(f"<{ndim}I", data, _FIXED.size)
    block, latent_bits, initial, words = _TAIL.unpack_from(data, _FIXED.size + 4 * ndim)
    if len(data) - end != 4 * words:
        raise ValueError(
            f"data: the header announces a payload of {4 * words} bytes, the file holds "
            f"{len(data) - end}: it is truncated or damaged"
        )
    return Header(
        kind=KINDS[kind],
        coder=CODERS[coder],
        fingerprint=finger,
        checksum=checksum,
        num_levels=levels,
        dtype=dtype.rstrip(b"\0").decode("ascii"),
        shape=tuple(shape),
        block_size=block,
        latent_bits=latent_bits,
        initial_words=initial,
        precision=precision,
        version=version,
        payload_words=words,
    )


def payload_words(data: bytes, header: Header) -> np.ndarray:
    """The payload of ``data`` as native ``uint32`` words."""
    words = np.frombuffer(bytes(data), dtype="<u4", offset=header.size)
    return words.astype(np.uint32)


def pack(header: Header, words: np.ndarray) -> bytes:
    """The file: ``header`` (with the payload's length) then ``words``, little-endian."""
    words = np.asarray(words, dtype=np.uint32)
    return replace(header, payload_words=len(words)).pack() + words.astype("<u4").tobytes()


def _tensor_bytes(t: Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _tensors(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Tensor]]:
    """The tensors an object holds (attributes, recursively through non-module objects)."""
    if isinstance(obj, nn.Module):
        return [(prefix + k, v) for k, v in obj.state_dict().items()]
    found: list[tuple[str, Tensor]] = []
    if depth > 4 or not hasattr(obj, "__dict__"):
        return found
    for key, value in sorted(vars(obj).items()):
        if isinstance(value, Tensor):
            found.append((prefix + key, value))
        elif isinstance(value, nn.Module) or (
            hasattr(value, "__dict__") and not isinstance(value, type) and not callable(value)
        ):
            found += _tensors(value, f"{prefix}{key}.", depth + 1)
    return found


def fingerprint(
    obj: Any, *extra: object, tensors: list[tuple[str, Tensor]] | None = None
) -> bytes:
    """16 bytes that identify a model: its class, ``extra`` (shapes, levels, settings) and
    every tensor of its ``state_dict`` (a module), of ``tensors`` when given, or held in its
    attributes (any other object), with names, dtypes and shapes.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> before = fingerprint(net, (2,), 4)
        >>> len(before), before == fingerprint(net, (2,), 4)
        (16, True)
        >>> with torch.no_grad():
        ...     _ = net.bias.add_(1.0)  # another model: another fingerprint
        >>> before == fingerprint(net, (2,), 4)
        False
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(obj).__qualname__}|{extra!r}".encode())  # not the module: it may move
    for name, t in tensors if tensors is not None else _tensors(obj):
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.digest()


def data_checksum(values: Tensor) -> bytes:
    """8 bytes that identify integer data: BLAKE2b of the shape and the int64 values.

    Example:
        >>> x = torch.tensor([[0, 1], [2, 3]])
        >>> len(data_checksum(x)), data_checksum(x) == data_checksum(x.to(torch.uint8))
        (8, True)
        >>> data_checksum(x) == data_checksum(x.reshape(1, 4))  # the shape counts
        False
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(tuple(values.shape)).encode())
    h.update(values.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return h.digest()
