r"""Diagnostics of fitted model/guide pairs: ELBO surgery (reconstruction, mutual
information, marginal KL), per-data-point PSIS :math:`\hat k` of the importance
weights, and ArviZ ``InferenceData`` with the pointwise log-likelihood that
``az.loo`` and ``az.compare`` read.

ArviZ is imported only when :func:`to_inference_data` (or :func:`psislw`) runs.

.. code-block:: python

    surgery = diagnostics.elbo_surgery(vae.model, vae.guide, digits.train)
    idata = diagnostics.to_inference_data(vae.model, vae.guide, digits.test, history=history)
    az.loo(idata); az.compare({"flow prior": idata, "normal prior": idata_normal})
"""

from .arviz import arviz_module, pointwise_to_inference_data, psislw, to_inference_data
from .pareto import BANDS, pareto_k, summarize_pareto_k
from .surgery import ELBOSurgery, SaturatedMutualInformationWarning, elbo_surgery

__all__ = [
    "BANDS",
    "ELBOSurgery",
    "SaturatedMutualInformationWarning",
    "arviz_module",
    "elbo_surgery",
    "pareto_k",
    "pointwise_to_inference_data",
    "psislw",
    "summarize_pareto_k",
    "to_inference_data",
]
