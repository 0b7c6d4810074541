r"""Model/guide pairs: flow densities (and, as they land, dequantization and VAEs)."""

from .flow_model import FlowModel

__all__ = ["FlowModel"]
