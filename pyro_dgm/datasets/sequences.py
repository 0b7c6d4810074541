r"""Integer sequence data sets, embedded (no download): digits read as sequences, and
generated quantized noisy waveforms.

Shape convention: a sequence data set holds tensors of shape :math:`(N, C, T)`, dtype
``torch.uint8``, with :math:`C = 1` channel, like a one-channel image :math:`(N, 1, H, W)`;
the autoregressive order is the time order (channels innermost when :math:`C > 1`).
Values are levels in :math:`\{0, \dots, L-1\}` (``Dataset.num_levels``), so bits per
dimension are :math:`-\log_2 P(y) / (CT)`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..utils.checks import check_int
from .images import digits
from .splits import Dataset

__all__ = ["WAVEFORM_NOISE", "digit_sequences", "waveforms"]

#: Standard deviation of the white noise of :func:`waveforms`, on the :math:`[-1, 1]` scale.
WAVEFORM_NOISE = 0.05


def digit_sequences(*, seed: int = 0) -> Dataset:
    r"""The images of :func:`~pyro_dgm.datasets.digits` read as sequences of length 64.

    Each :math:`8 \times 8` image becomes the sequence of its pixels in raster order
    (row by row), shape :math:`(1, 64)`; the splits (train 1257, validation 180, test
    360), the labels and the 17 levels are those of ``digits(seed=seed)``, so the
    same image is in the same split. A causal 1-D model on these sees the rows above
    only through its receptive field (8 steps back is the pixel above).

    Arguments:
        seed: The seed of the split (that of :func:`~pyro_dgm.datasets.digits`).

    Returns:
        A :class:`Dataset` named ``"digit_sequences"``: ``(N, 1, 64)``, ``torch.uint8``,
        ``num_levels=17``, with labels.

    Example:
        >>> d = digit_sequences()
        >>> d.train.shape, d.num_levels
        (torch.Size([1257, 1, 64]), 17)
    """
    images = digits(seed=seed)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), 1, -1)

    return Dataset(
        "digit_sequences",
        train=flat(images.train),
        validation=flat(images.validation),
        test=flat(images.test),
        num_levels=images.num_levels,
        train_labels=images.train_labels,
        validation_labels=images.validation_labels,
        test_labels=images.test_labels,
    )


def waveforms(
    num_sequences: int = 1000,
    length: int = 1024,
    num_levels: int = 32,
    *,
    seed: int = 0,
) -> Dataset:
    r"""Generated, quantized noisy waveforms: sums of sinusoids plus white noise.

    Sequence :math:`n` is

    .. math:: x_t = \frac{0.9}{\sum_k a_k} \sum_{k=1}^{K} a_k
        \sin\Big(\frac{2\pi t}{P_k} + \phi_k\Big) + \sigma \varepsilon_t, \qquad
        y_t = \operatorname{round}\Big(\frac{\operatorname{clip}(x_t, -1, 1) + 1}{2}
        (L - 1)\Big),

    with :math:`K \in \{1, 2, 3\}` components drawn uniformly, periods :math:`P_k`
    log-uniform in :math:`[8, 128]` steps, amplitudes :math:`a_k \sim U(0.3, 1)`,
    phases :math:`\phi_k \sim U(0, 2\pi)`, :math:`\varepsilon_t \sim \mathcal{N}(0, 1)`
    and :math:`\sigma` = :data:`WAVEFORM_NOISE` = 0.05. Everything comes from
    ``numpy.random.RandomState(seed)``, so the data set is a pure function of its
    arguments. The sinusoids are predictable from the past; the noise is not: its
    discretized entropy (:math:`\approx \log_2(\sigma (L-1)/2 \cdot \sqrt{2\pi e})`
    bits per step when :math:`\sigma (L-1)/2 \gtrsim 1`) is about what a perfect model
    pays per step.

    The sequences are split in order: the first :math:`\lfloor N/5 \rfloor` are the test
    set, the next :math:`\lfloor N/10 \rfloor` the validation set, the rest the
    training set.

    Arguments:
        num_sequences: :math:`N \ge 10`.
        length: :math:`T`, steps per sequence.
        num_levels: :math:`L \in [2, 256]`.
        seed: The seed.

    Returns:
        A :class:`Dataset` named ``"waveforms"``: ``(N, 1, T)``, ``torch.uint8``,
        ``num_levels=L``, no labels.

    Example:
        >>> d = waveforms(num_sequences=20, length=256)
        >>> d.train.shape, d.test.shape, d.num_levels
        (torch.Size([14, 1, 256]), torch.Size([4, 1, 256]), 32)
    """
    n = check_int(num_sequences, "num_sequences", 10)
    length = check_int(length, "length", 1)
    levels = check_int(num_levels, "num_levels", 2, 256)
    seed = check_int(seed, "seed", 0, 2**32 - 1)
    rng = np.random.RandomState(seed)
    t = np.arange(length, dtype=np.float64)
    components = rng.randint(1, 4, size=n)
    periods = np.exp(rng.uniform(math.log(8.0), math.log(128.0), size=(n, 3)))
    amplitudes = rng.uniform(0.3, 1.0, size=(n, 3)) * (np.arange(3) < components[:, None])
    phases = rng.uniform(0.0, 2 * math.pi, size=(n, 3))
    waves = amplitudes[:, :, None] * np.sin(
        2 * math.pi * t / periods[:, :, None] + phases[:, :, None]
    )
    x = 0.9 * waves.sum(1) / amplitudes.sum(1, keepdims=True)
    x = x + WAVEFORM_NOISE * rng.standard_normal((n, length))
    y = np.rint((np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * (levels - 1)).astype(np.uint8)
    data = torch.from_numpy(y).unsqueeze(1)
    n_test, n_val = n // 5, n // 10
    return Dataset(
        "waveforms",
        train=data[n_test + n_val :],
        validation=data[n_test : n_test + n_val],
        test=data[:n_test],
        num_levels=levels,
    )
