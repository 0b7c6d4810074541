r"""Diagnostics of fitted model/guide pairs: ELBO surgery (reconstruction, mutual
information, marginal KL), the active latent units of a VAE (with a warning on
posterior collapse), per-data-point PSIS :math:`\hat k` of the importance
weights, and ArviZ ``InferenceData`` with the pointwise log-likelihood that
``az.loo`` and ``az.compare`` read.

.. math:: \frac1N \sum_i \mathcal L_i = \underbrace{\frac1N \sum_i
    \mathbb E_{q(z|x_i)} \log p(x_i \mid z)}_{\text{reconstruction}}
    - \mathbb I_q[x, z] - \mathrm{KL}\big(q_\text{agg}(z) \,\|\, p(z)\big),
    \qquad P(w > t) \propto t^{-1/\hat k}

(ELBO surgery, Hoffman & Johnson, 2016; the generalized Pareto tail of the importance
weights :math:`w`, Vehtari et al.). ArviZ is imported only when
:func:`to_inference_data` (or :func:`psislw`) runs.

.. code-block:: python

    surgery = diagnostics.elbo_surgery(vae.model, vae.guide, digits.train)
    idata = diagnostics.to_inference_data(vae.model, vae.guide, digits.test, history=history)
    az.loo(idata); az.compare({"flow prior": idata, "normal prior": idata_normal})
"""

from .active_units import (
    ActiveUnits,
    PosteriorCollapseWarning,
    active_units,
    collapse_report,
)
from .arviz import arviz_module, pointwise_to_inference_data, psislw, to_inference_data
from .pareto import BANDS, pareto_k, summarize_pareto_k
from .surgery import ELBOSurgery, SaturatedMutualInformationWarning, elbo_surgery

__all__ = [
    "BANDS",
    "ActiveUnits",
    "ELBOSurgery",
    "PosteriorCollapseWarning",
    "SaturatedMutualInformationWarning",
    "active_units",
    "arviz_module",
    "collapse_report",
    "elbo_surgery",
    "pareto_k",
    "pointwise_to_inference_data",
    "psislw",
    "summarize_pareto_k",
    "to_inference_data",
]
