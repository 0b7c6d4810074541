r"""Data-parallel training on ``torch.distributed``: what :func:`~pyro_dgm.infer.fit`
needs from the process group, and nothing when there is none.

Under ``torchrun --nproc_per_node=N`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) every process runs the same
``fit`` call. Each takes its share of every global batch, and after its backward pass
the gradients of all the parameters, the step's loss and two flags (out of time, an
error) travel in one bucketed ``all_reduce``, so that every process takes the same
step and makes the same decisions. The gradient of rank :math:`r` is weighted so that
the sum is the gradient a single process would take on the whole batch:

.. math:: g = \sum_r \frac{b_r\, n_r^{-1}}{b\, n^{-1}}\, g_r ,

with :math:`b_r` the points of rank :math:`r`'s share, :math:`b` those of the whole
batch, and :math:`n` the loss's normalizer (the batch size, or the data size of a
model that scales its plate to it).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import DistributedError

__all__ = ["ProcessGroup", "process_group"]


class ProcessGroup:
    """This process's place in the group, and the collective steps ``fit`` takes.

    One process (no ``torch.distributed`` group) is a group of one whose collectives do
    nothing.

    Example:
        >>> group = ProcessGroup()  # one process: the collectives do nothing
        >>> group.is_main, group.active, group.sum([1.0, 2.0])
        (True, False, [1.0, 2.0])
    """

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None) -> None:
        self.rank, self.world = rank, world
        self.device = device  # where the collectives' buffers live (NCCL: the GPU)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and reports and shows progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def _buffer(self, values: Sequence[float]) -> Tensor:
        return torch.tensor(list(values), dtype=torch.float64, device=self.device)

    def broadcast(self, tensors: Sequence[Tensor]) -> None:
        """Rank 0's values into every process's ``tensors`` (parameters, buffers)."""
        if not self.active:
            return
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def broadcast_int(self, value: int) -> int:
        if not self.active:
            return value
        buffer = self._buffer([value])
        dist.broadcast(buffer, src=0)
        return int(buffer.item())

    def sum(self, values: Sequence[float]) -> list[float]:
        """The sum over the processes of each of ``values``."""
        if not self.active:
            return list(values)
        buffer = self._buffer(values)
        dist.all_reduce(buffer)
        return buffer.tolist()

    def step(self, params: Sequence[Tensor], weight: float, stats: Sequence[float]) -> list[float]:
        """Sum ``weight`` times every parameter's gradient over the processes, in one
        bucket with ``stats`` (summed too), in place; returns the summed ``stats``."""
        if not self.active:
            return list(stats)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]) if grads else torch.zeros(0)
        extra = torch.tensor(list(stats), dtype=flat.dtype, device=flat.device)
        bucket = torch.cat([flat * weight, extra])
        dist.all_reduce(bucket)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = bucket[offset : offset + n].view_as(p).clone()
            offset += n
        return bucket[offset:].tolist()

    def check(self, failed: float, where: str) -> None:
        """Raise :class:`~pyro_dgm.infer.errors.DistributedError` when another process
        flagged a failure in the collective it just left."""
        if failed > 0:
            raise DistributedError(
                f"{int(failed)} other process(es) of the group failed during {where}; "
                f"rank {self.rank} of {self.world} stops too (the failing rank's error says why)"
            )


def _init_from_environment(device: torch.device | None) -> None:
    """Join the group that ``torchrun`` describes in the environment, if there is one."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    cuda = device is not None and device.type == "cuda"
    timeout = datetime.timedelta(seconds=float(os.environ.get("PYRO_DGM_DIST_TIMEOUT", "300")))
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timeout)


def process_group(device: torch.device | None = None) -> ProcessGroup:
    """This process's :class:`ProcessGroup`: the ``torch.distributed`` group that is
    initialized (or that ``torchrun``'s environment describes: it is joined, with the
    NCCL backend for a CUDA ``device``, gloo otherwise), or a group of one.

    Example:
        >>> process_group().world  # outside torchrun: a group of one
        1
    """
    if not dist.is_available():
        return ProcessGroup()
    _init_from_environment(device)
    if not dist.is_initialized():
        return ProcessGroup()
    backend = dist.get_backend()
    buffer_device = device if backend == "nccl" else torch.device("cpu")
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), buffer_device)
