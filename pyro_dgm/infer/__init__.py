r"""Training (:func:`fit`), checkpoints and likelihood metrics."""

from ..utils.registration import register_module
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .fit import DivergenceError, NonFiniteLossError, fit
from .history import History
from .metrics import (
    HeavyTailWarning,
    LogLikelihood,
    PointwiseLogLikelihood,
    TailCheckSkippedWarning,
    bits_per_dim,
    importance_log_likelihood,
    likelihood_bounds,
    log_likelihood,
    nats_to_bits_per_dim,
    pareto_k,
)
from .objective import evaluate_loss

__all__ = [
    "Checkpoint",
    "DivergenceError",
    "HeavyTailWarning",
    "History",
    "LogLikelihood",
    "NonFiniteLossError",
    "PointwiseLogLikelihood",
    "TailCheckSkippedWarning",
    "bits_per_dim",
    "evaluate_loss",
    "fit",
    "importance_log_likelihood",
    "likelihood_bounds",
    "load_checkpoint",
    "log_likelihood",
    "nats_to_bits_per_dim",
    "pareto_k",
    "register_module",
    "save_checkpoint",
]
