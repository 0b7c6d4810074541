r"""Model/guide pairs: flow densities (forward KL), flow guides for energies (reverse KL),
dequantization of discrete data, VAEs (their parts live in :mod:`pyro_dgm.models.vae`)."""

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
    "DEQUANTIZATIONS",
    "LIKELIHOODS",
    "POSTERIORS",
    "PRIORS",
    "VAE",
    "EnergyModel",
    "FlowGuide",
    "FlowModel",
    "UniformDequantization",
    "VariationalDequantization",
    "dequantization_features",
    "dequantization_noise_flow",
]
