r"""Lossless compression with the models: bits/dim written to disk.

A likelihood in bits per dimension is a promise of a file size. With an entropy coder
(constriction's range and ANS coders, an optional dependency: ``pip install
pyro-dgm[compress]``) every model with an exact or bounded discrete likelihood becomes a
codec:

* **exact models**, coded in their autoregressive order with the range coder
  (:mod:`~pyro_dgm.compression.exact`): :class:`~pyro_dgm.distributions.PixelCNN` and
  :class:`~pyro_dgm.distributions.WaveNet` (their modules, their distributions, their
  :class:`~pyro_dgm.models.AutoregressiveModel` pairs), factorized discrete
  distributions (``Discretized``, ``DiscretizedLogistic``, ``DiscretizedLogisticMixture``,
  ``Bernoulli``, ``Categorical`` with ``.to_event``), and any model that exposes its
  per-dimension conditionals (:class:`LevelConditionals`). The file holds about
  :math:`-\log_2 P(x)` bits;
* **VAEs**, by bits-back coding with ANS (BB-ANS, :mod:`~pyro_dgm.compression.bitsback`):
  about :math:`-\mathrm{ELBO}(x)/\log 2` bits per data point, after the initial bits.

Dequantization pairs are refused: their likelihood is an integral of a joint flow density
over a cell, with no per-dimension conditionals to code (see :func:`encode`).

.. code-block:: python

    from pyro_dgm import compression
    data = compression.encode(pixelcnn_pair, y_test)          # bytes: header + payload
    assert torch.equal(compression.decode(pixelcnn_pair, data), y_test)
    print(compression.measure(pixelcnn_pair, y_test))          # bits/dim written
    blob = compression.compress_file(pair, np.load("x.npy"))   # .npy integer arrays

*Bit-for-bit agreement.* The conditionals are computed in float64 on the CPU (a module
is coded through a float64 CPU copy) and quantized to 24-bit integer frequencies, every
level at least one count (:mod:`~pyro_dgm.compression.quantize`); encoder and decoder
run the same incremental loop on the same blocks. Other CPU math libraries, or GPU
kernels, may differ in the last bit: encode and decode on the same device type, with
the same dtype and build. Every file carries a model fingerprint and a checksum of
the data (:mod:`~pyro_dgm.compression.container`): a wrong model, shape, number of
levels or context, or a mismatch of the platform, is a ``ValueError``, never wrong values.

References:
    | Practical Lossless Compression with Latent Variables using Bits Back Coding
      (Townsend et al., 2019)
    | https://arxiv.org/abs/1901.04866
    | Understanding Entropy Coding With Asymmetric Numeral Systems (Bamler, 2022)
    | https://arxiv.org/abs/2201.01741
"""

from .backend import INSTALL_HINT, require_constriction
from .bitsback import LATENT_BITS, BitsBackCodec
from .codec import (
    Measurement,
    code_lengths,
    compress_file,
    decode,
    decompress_file,
    encode,
    measure,
)
from .conditionals import LevelConditionals, factorized_log_probs
from .container import FORMAT_VERSION, Header, read_header
from .exact import FactorizedCodec, SequentialCodec
from .quantize import PRECISION, quantize_log_probs

__all__ = [
    "FORMAT_VERSION",
    "INSTALL_HINT",
    "LATENT_BITS",
    "PRECISION",
    "BitsBackCodec",
    "FactorizedCodec",
    "Header",
    "LevelConditionals",
    "Measurement",
    "SequentialCodec",
    "code_lengths",
    "compress_file",
    "decode",
    "decompress_file",
    "encode",
    "factorized_log_probs",
    "measure",
    "quantize_log_probs",
    "read_header",
    "require_constriction",
]
