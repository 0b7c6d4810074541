r"""Any zuko flow as a pyro_dgm flow distribution."""

from __future__ import annotations

import torch
from torch import nn

from ..transforms.zuko import double_inversion, zuko_transform
from .base import Flow

__all__ = ["ZukoFlow"]


class ZukoFlow(Flow):
    r"""Any zuko flow (``zuko.flows.MAF``, ``NSF``, ``NAF``, ``RealNVP``, ...) as a
    pyro_dgm flow distribution: its lazy transform goes through the bridge
    :func:`~pyro_dgm.transforms.zuko_transform`, its standard normal base becomes
    the flow's base, and its parameters become this module's.

    ``direction="maf"`` keeps zuko's cost profile (scoring data in one pass);
    ``"iaf"`` flips it, for a guide that samples and scores its own samples.

    A zuko flow whose transformation is already inverted (``flow.transform =
    flow.transform.inv``, the trick of Pyro's flow-guide tutorial for cheap sampling)
    samples cheaply with the default ``"maf"``; ``"iaf"`` would flip it back to
    :math:`D` sequential passes per layer, so that pair is refused with a
    ``ValueError`` that says which of the two to drop.

    Arguments:
        flow: A ``zuko.flows.Flow`` with a standard normal base.
        direction: ``"maf"`` or ``"iaf"``.

    Example:
        >>> import zuko
        >>> flow = ZukoFlow(zuko.flows.NSF(2, transforms=2))
        >>> flow().log_prob(torch.zeros(4, 2)).shape
        torch.Size([4])
    """

    def __init__(self, flow: nn.Module, direction: str = "maf") -> None:
        transform, base = getattr(flow, "transform", None), getattr(flow, "base", None)
        if transform is None or base is None:
            raise ValueError(f"flow must be a zuko.flows.Flow, got {type(flow).__name__}")
        base_dist = base(None)
        if not (
            isinstance(base_dist, torch.distributions.Independent)
            and isinstance(base_dist.base_dist, torch.distributions.Normal)
            and len(base_dist.event_shape) == 1
            and bool((base_dist.mean == 0).all() and (base_dist.stddev == 1).all())
        ):
            raise ValueError(
                f"ZukoFlow needs zuko's standard normal base over vectors, got {base_dist}"
            )
        refusal = double_inversion(transform, direction, "flow")
        if refusal is not None:
            raise ValueError(refusal)
        super().__init__([zuko_transform(transform, direction)], event_shape=base_dist.event_shape)
        self.zuko_flow = flow
