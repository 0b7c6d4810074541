r"""Data sets that need no download: 2-D toys, the Rezende & Mohamed energies, digits, MNIST,
and integer sequences (digits read as sequences, generated waveforms).

Every data set is a :class:`Dataset` (train, validation and test tensors, with labels and
the number of levels for discrete data). :func:`load` builds one by name, for the CLI.
Labels become the context of a class-conditional model with
:meth:`Dataset.with_label_context` (one-hot rows, passed as ``model(x, context)``).

Each data set comes with what bounds a model of it, so that a result can be checked:
the toys' entropies (no model's held-out negative log-likelihood can go below them, up
to sampling error), the energies' normalizers, and uniform coding for discrete data,

.. math:: H(p) = -\mathbb E_{p}[\log p(x)] \le \mathbb E_p[-\log q(x)], \qquad
    p(z) = \frac{e^{-U(z)}}{Z}, \qquad
    \text{uniform coding of } L \text{ levels: } \log_2 L \text{ bits/dim}

(:func:`toy_entropy`, :data:`ENERGY_LOG_Z`, ``num_levels``).

Example:
    >>> from pyro_dgm import datasets
    >>> datasets.load("digits").train.shape
    torch.Size([1257, 1, 8, 8])
    >>> datasets.load("two_moons", num_train=500).train.shape
    torch.Size([500, 2])
    >>> datasets.load("digits").with_label_context().train_context.shape
    torch.Size([1257, 10])
"""

from __future__ import annotations

from typing import Any

from .energies import (
    ENERGY_LOG_Z,
    ENERGY_NAMES,
    U1,
    U2,
    U3,
    U4,
    energy_log_density,
    log_normalizer,
)
from .images import DIGITS_SPLIT, digits, mnist, read_idx, write_idx
from .sequences import WAVEFORM_NOISE, digit_sequences, waveforms
from .splits import Dataset
from .toys import (
    TOY_COMPONENTS,
    TOY_NAMES,
    checkerboard,
    eight_gaussians,
    estimate_toy_entropy,
    pinwheel,
    rings,
    toy,
    toy_dataset,
    toy_entropy,
    toy_log_prob,
    toy_with_labels,
    two_moons,
    two_spirals,
)

__all__ = [
    "ALIASES",
    "DATASET_NAMES",
    "DIGITS_SPLIT",
    "ENERGY_LOG_Z",
    "ENERGY_NAMES",
    "TOY_COMPONENTS",
    "TOY_NAMES",
    "U1",
    "U2",
    "U3",
    "U4",
    "WAVEFORM_NOISE",
    "Dataset",
    "checkerboard",
    "digit_sequences",
    "digits",
    "eight_gaussians",
    "energy_log_density",
    "estimate_toy_entropy",
    "load",
    "log_normalizer",
    "mnist",
    "pinwheel",
    "read_idx",
    "rings",
    "toy",
    "toy_dataset",
    "toy_entropy",
    "toy_log_prob",
    "toy_with_labels",
    "two_moons",
    "two_spirals",
    "waveforms",
    "write_idx",
]

#: Short names :func:`load` also accepts (the command line's ``--data moons``).
ALIASES = {"moons": "two_moons", "spirals": "two_spirals", "8gaussians": "eight_gaussians"}

#: The names :func:`load` accepts.
DATASET_NAMES = ("digits", "digit_sequences", "waveforms", "mnist", *TOY_NAMES, *ALIASES)


def load(name: str, **kwargs: Any) -> Dataset:
    r"""Builds a data set by name (for the command line).

    Arguments:
        name: ``"digits"`` (:func:`digits`), ``"digit_sequences"``
            (:func:`digit_sequences`), ``"waveforms"`` (:func:`waveforms`), ``"mnist"``
            (:func:`mnist`, which needs ``path=``), or a toy of :data:`TOY_NAMES`
            (:func:`toy_dataset`).
        kwargs: Passed on to that function, e.g. ``seed=1``, ``num_train=5000`` or
            ``labels=True`` (a toy's components as labels).

    Returns:
        The :class:`Dataset`.

    Raises:
        ValueError: If ``name`` is unknown; the message lists the valid names.

    Example:
        >>> load("rings", num_train=100, num_validation=20, num_test=20)
        ... # doctest: +NORMALIZE_WHITESPACE
        Dataset(name='rings', train=100, validation=20, test=20, event_shape=(2,),
                dtype=torch.float32, num_levels=None, labels=False)
    """
    name = ALIASES.get(name, name)
    if name == "digits":
        return digits(**kwargs)
    if name == "digit_sequences":
        return digit_sequences(**kwargs)
    if name == "waveforms":
        return waveforms(**kwargs)
    if name == "mnist":
        if "path" not in kwargs:
            raise ValueError("path: load('mnist', path=...) needs the folder of the IDX files")
        return mnist(**kwargs)
    if name in TOY_NAMES:
        return toy_dataset(name, **kwargs)
    raise ValueError(f"name: expected one of {list(DATASET_NAMES)}, got {name!r}")
