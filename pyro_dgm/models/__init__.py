r"""Model/guide pairs: flow densities (forward KL), flow guides for energies (reverse KL),
autoregressive models (exact likelihood), dequantization of discrete data, VAEs (their
parts live in :mod:`pyro_dgm.models.vae`).

Each pair is trained by the same objective, the ELBO of a ``model`` and a ``guide``, and
what the ELBO is depends on the pair:

.. math::
    \begin{aligned}
    \text{flow density (no latent)}\quad & \mathcal L(x) = \log p(x)
        = \log p_Z(f(x)) + \log\left|\det J_f(x)\right| \\
    \text{autoregressive (no latent)}\quad & \mathcal L(y) = \log P(y)
        = \textstyle\sum_d \log P(y_d \mid y_{<d}) \\
    \text{VAE}\quad & \mathcal L(x) = \mathbb E_{q(z|x)}\big[\log p(x \mid z)
        + \log p(z) - \log q(z \mid x)\big] \le \log p(x) \\
    \text{dequantization}\quad & \mathcal L(y) = \mathbb E_{q(u|y)}\big[\log p(y + u)
        - \log q(u \mid y)\big] \le \log P(y) \\
    \text{flow guide (reverse KL)}\quad & \mathcal L = \mathbb E_{q(z)}\big[\log \tilde
        p(z) - \log q(z)\big] = \log Z - \mathrm{KL}(q \,\|\, p) \le \log Z
    \end{aligned}

Every site of a pair sits in ``pyro.plate("data", len(x))``, the outermost plate, so
that :mod:`pyro_dgm.infer`'s estimators score each data point on its own; every pair but
the energy's has ``posterior_predictive`` (new draws of ``x``; ``pyro.infer.Predictive``
returns the observed ``x`` at an observed site) where the module defines it.

Example:
    >>> import torch
    >>> from pyro_dgm.flows import MAF
    >>> pair = FlowModel(MAF(2, num_layers=1), name="models_package_example")
    >>> pair.posterior_predictive(torch.randn(5, 2), num_samples=2).shape
    torch.Size([2, 5, 2])
"""

from .autoregressive import AUTOREGRESSIVE_MODELS, AutoregressiveModel, build_autoregressive
from .dequantization import (
    DEQUANTIZATIONS,
    UniformDequantization,
    VariationalDequantization,
    dequantization_features,
    dequantization_noise_flow,
)
from .energy import EnergyModel, FlowGuide
from .flow_model import FlowModel
from .vae import LIKELIHOODS, POSTERIORS, PRIORS, VAE

__all__ = [
    "AUTOREGRESSIVE_MODELS",
    "DEQUANTIZATIONS",
    "LIKELIHOODS",
    "POSTERIORS",
    "PRIORS",
    "VAE",
    "AutoregressiveModel",
    "EnergyModel",
    "FlowGuide",
    "FlowModel",
    "UniformDequantization",
    "VariationalDequantization",
    "build_autoregressive",
    "dequantization_features",
    "dequantization_noise_flow",
]
