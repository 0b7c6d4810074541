r"""Model/guide pairs: flow densities (forward KL), flow guides for energies (reverse KL),
dequantization of discrete data."""

from .dequantization import (
    DEQUANTIZATIONS,
    UniformDequantization,
    VariationalDequantization,
    dequantization_features,
    dequantization_noise_flow,
)
from .energy import EnergyModel, FlowGuide
from .flow_model import FlowModel

__all__ = [
    "DEQUANTIZATIONS",
    "EnergyModel",
    "FlowGuide",
    "FlowModel",
    "UniformDequantization",
    "VariationalDequantization",
    "dequantization_features",
    "dequantization_noise_flow",
]
