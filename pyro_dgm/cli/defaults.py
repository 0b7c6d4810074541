"""The training settings each kind of model gets unless told otherwise: one table, read by
``pyro-dgm fit`` (:func:`~pyro_dgm.cli.build.resolve_config`) and by the benchmarks, so
that a run of the tool and a benchmark row train alike.

The values are the settings the benchmarks train with (``benchmarks/image_flows.py``,
``benchmarks/vae.py``, ``benchmarks/dequantization.py`` read the learning rates, batches
and patience from here; ``benchmarks/small_data.py`` all of them): Adam at
``1e-3`` with small batches for VAEs and multi-scale image flows, ``2e-3`` for vector
flows and the autoregressive models, and a patience of 20 epochs for all. The
autoregressive models train on batches of 32: on the 1,000-image digits subset that
lowered PixelCNN's and WaveNet's test NLL against batches of 256 (the more, smaller steps
of an epoch generalise better from few images). Every kind but the vector flows also gets
decoupled weight decay ``1e-4`` (AdamW) and an exponential moving average of the
parameters with decay ``0.999``: on a 1,000-image subset of digits they lowered the test
NLL of every one of those models on every one of 3 seeds (``benchmarks/small_data.py``,
results in ``benchmarks/README.md``; for the image flows measured without dropout, whose
default, 0.1, is :data:`~pyro_dgm.cli.build.IMAGE_FLOW_DROPOUT`; the autoregressive
models' dropout, also 0.1, is :data:`~pyro_dgm.cli.build.AUTOREGRESSIVE_DROPOUT`). The
vector flows keep plain Adam: the two also helped the spline flow on that subset (3 of
3 seeds), but the same defaults serve the 2-D toys, where they were not measured.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TRAINING_DEFAULTS", "TrainingDefaults", "training_defaults"]


@dataclass(frozen=True)
class TrainingDefaults:
    """The optimizer and early-stopping settings of one kind of model.

    Attributes:
        lr: Adam's learning rate.
        batch_size: Minibatch size.
        patience: Epochs without validation improvement before early stopping.
        weight_decay: Decoupled weight decay (AdamW); 0: Adam.
        ema: The decay of the exponential moving average of the parameters that is
            evaluated and saved; 0: no averaging.

    Example:
        >>> TrainingDefaults(lr=1e-3, batch_size=64, patience=20).weight_decay
        0.0
    """

    lr: float
    batch_size: int
    patience: int
    weight_decay: float = 0.0
    ema: float = 0.0


#: The defaults of each kind of :func:`~pyro_dgm.cli.build.model_kind`.
TRAINING_DEFAULTS: dict[str, TrainingDefaults] = {
    "flow": TrainingDefaults(lr=2e-3, batch_size=256, patience=20),
    "image_flow": TrainingDefaults(
        lr=1e-3, batch_size=64, patience=20, weight_decay=1e-4, ema=0.999
    ),
    "vae": TrainingDefaults(lr=1e-3, batch_size=128, patience=20, weight_decay=1e-4, ema=0.999),
    "autoregressive": TrainingDefaults(
        lr=2e-3, batch_size=32, patience=20, weight_decay=1e-4, ema=0.999
    ),
}


def training_defaults(kind: str) -> TrainingDefaults:
    """The defaults of a kind of model (``"flow"``, ``"image_flow"``, ``"vae"``,
    ``"autoregressive"``).

    Raises:
        ValueError: For another kind.

    Example:
        >>> training_defaults("vae").lr, training_defaults("flow").lr
        (0.001, 0.002)
    """
    if kind not in TRAINING_DEFAULTS:
        raise ValueError(f"kind: expected one of {sorted(TRAINING_DEFAULTS)}, got {kind!r}")
    return TRAINING_DEFAULTS[kind]
