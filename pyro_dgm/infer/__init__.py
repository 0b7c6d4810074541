r"""Training (:func:`fit`), checkpoints and likelihood metrics.

:func:`fit` minimises the negative ELBO per data point of any Pyro model/guide pair by
minibatch SVI; the estimators score each held-out point :math:`x_i` on its own, with the
bound they use named in the result:

.. math:: \underbrace{\mathbb E_{q}\Big[\log \frac{p(x_i, z)}{q(z \mid x_i)}\Big]}_{
    \text{ELBO: } \texttt{log\_likelihood}}
    \le \underbrace{\mathbb E\Big[\log \frac1K \sum_{k=1}^K
    \frac{p(x_i, z_k)}{q(z_k \mid x_i)}\Big]}_{\text{IWAE: }
    \texttt{importance\_log\_likelihood}} \le \log p(x_i),
    \qquad \mathrm{bpd} = \frac{-\log P(y)}{D \log 2}

(exact for a pair without latent variables). PSIS :math:`\hat k` of each point's
importance weights (:func:`pareto_k`) says where the guide, and so the bound, is not to
be trusted (:math:`\hat k > 0.7`).
"""

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
