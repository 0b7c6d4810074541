r"""Model/guide pairs: flow densities (forward KL), flow guides for energies (reverse KL),
autoregressive models (exact likelihood),
dequantization of discrete data, VAEs (their parts live in :mod:`pyro_dgm.models.vae`)."""

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
