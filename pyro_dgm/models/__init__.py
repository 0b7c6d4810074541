r"""Model/guide pairs: flow densities (forward KL) and flow guides for energies (reverse KL)."""

from .energy import EnergyModel, FlowGuide
from .flow_model import FlowModel

__all__ = ["EnergyModel", "FlowGuide", "FlowModel"]
