r"""How the per-point estimators split :math:`K` draws of :math:`N` points into vectorized
passes: chunk sizes from a memory budget, and the memory layout of convolutions.

One pass scores :math:`b` points with :math:`k` draws each, a ``(k, b)`` grid of guide
draws in a particle plate left of the data plate. The tensors alive during a pass grow
as :math:`b k`; a probe pass measures the bytes per (draw, point) and
:func:`choose_chunks` picks the largest :math:`b k` within ``memory_budget``. On a CPU a
modest budget is also the fast one: a pass whose activations fit the caches runs
faster per draw than a huge one.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pyro.util
import torch
from pyro import poutine
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..utils.checks import check_int
from .data import Batch
from .traces import log_importance_weights, sample_sites

__all__ = [
    "DEFAULT_CPU_BUDGET",
    "DEFAULT_DEVICE_BUDGET",
    "PROBE_DRAWS",
    "StateChangeError",
    "channels_last_convolutions",
    "choose_chunks",
    "default_memory_budget",
    "draw_chunks",
    "has_latent_sites",
    "peak_bytes",
]

#: Default bytes of tensors alive at once in one pass on a CPU (32 MiB): on the
#: digits flows this is about 1,000 draws per pass, the fastest size measured there.
DEFAULT_CPU_BUDGET = 2**25
#: Default on an accelerator (1 GiB): bigger passes keep it busy.
DEFAULT_DEVICE_BUDGET = 2**30
#: Draws per point of the probe passes of :func:`choose_chunks`: 2 and 8, then fourfold
#: more while a probe's peak is under a quarter of the budget, up to the last. Small
#: probes alone can be hidden by tensors made once per pass (a VampPrior's encoder pass
#: over its pseudo-inputs, say): their peak does not grow with the draws, the measured
#: slope is too small, and the passes come out many times larger than the budget.
PROBE_DRAWS = (2, 8, 32, 128)
#: Points and draws per pass when no probe can run: a pair whose first scoring pass
#: changes it (an ActNorm's data-dependent initialisation) is scored as before the
#: budget existed, so that it initialises from the same batch.
FALLBACK_BATCH_SIZE = 128
FALLBACK_CHUNK_SIZE = 100


class StateChangeError(RuntimeError):
    """A probe pass would have changed a tensor that existed before it (a parameter, a
    buffer: e.g. an ActNorm layer's data-dependent initialisation); it was stopped first.

    Example:
        >>> issubclass(StateChangeError, RuntimeError)
        True
    """


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the storages that the operators inside it create, while they
    are alive, and keeps the peak (an estimate: a storage is counted from the operator
    that made it until the tensor it first came out in is freed). With ``guard``, an
    operator that would write into a tensor made before raises :class:`StateChangeError`
    before it runs."""

    def __init__(self, guard: bool = False) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.guard = guard
        self._owned: set[int] = set()

    def _check_writes(self, func: Any, args: tuple, kwargs: dict) -> None:
        schema = func._schema
        if not schema.is_mutable:
            return
        for i, argument in enumerate(schema.arguments):
            if argument.alias_info is None or not argument.alias_info.is_write:
                continue
            value = kwargs.get(argument.name, args[i] if i < len(args) else None)
            for t in tree_flatten(value)[0]:
                if isinstance(t, Tensor) and t.untyped_storage().data_ptr() not in self._owned:
                    raise StateChangeError(f"{func} writes into a tensor made before the probe")

    def _release(self, key: int, nbytes: int) -> None:
        self._owned.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if self.guard:
            self._check_writes(func, args, kwargs)
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor) or t.is_meta:
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self._owned:  # a view of a storage already counted
                continue
            self._owned.add(key)
            self.live += nbytes
            weakref.finalize(t, self._release, key, nbytes)
        self.peak = max(self.peak, self.live)
        return out


def peak_bytes(fn: Callable[[], Any], guard: bool = False) -> int:
    """The peak bytes of the tensors that ``fn()`` creates and holds at once (its
    inputs and parameters not counted): an estimate of the memory a pass needs.

    Arguments:
        fn: The pass.
        guard: Stop ``fn`` with :class:`StateChangeError` before it writes into a tensor
            it did not make (so that a probe changes no parameter or buffer).

    Example:
        >>> peak_bytes(lambda: torch.zeros(1000).exp().sum()) >= 4000  # two vectors of 4 kB
        True
        >>> weight = torch.zeros(3)
        >>> peak_bytes(lambda: weight.add_(1.0), guard=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pyro_dgm.infer.chunking.StateChangeError: ...
    """
    tracker = _LiveBytes(guard)
    with tracker:
        fn()
    return tracker.peak


def default_memory_budget(batch: Batch) -> int:
    """:data:`DEFAULT_CPU_BUDGET` for data on a CPU, else :data:`DEFAULT_DEVICE_BUDGET`.

    Example:
        >>> default_memory_budget(Batch((torch.zeros(2, 3),), {})) == DEFAULT_CPU_BUDGET
        True
    """
    return DEFAULT_CPU_BUDGET if batch.x.device.type == "cpu" else DEFAULT_DEVICE_BUDGET


def choose_chunks(
    model: Callable,
    guide: Callable,
    batch: Batch,
    num_samples: int,
    nesting: int,
    memory_budget: int,
    batch_size: int | None = None,
    chunk_size: int | None = None,
) -> tuple[int, int]:
    r"""``(points, draws)`` per pass: a fixed ``batch_size`` or ``chunk_size`` is kept,
    the other is the largest that fits ``memory_budget``.

    Probe passes on two points of ``batch`` measure the peak bytes with 2 and 8 draws
    each, then 32 and 128 (:data:`PROBE_DRAWS`) while a probe's peak is under a quarter of
    the budget (so a probe stays within about the budget); the slope of the last two is
    the cost :math:`c` of one (draw, point) and a pass gets
    :math:`b k \le \text{budget} / c` of them, draws first (all :math:`K` draws of a point
    in one pass if they fit), split evenly over the passes. The probes run with the
    random state saved and restored, so they change no later draw, and under a guard
    that stops them before they write into a parameter or buffer: a pair whose first
    scoring pass would change it (an ActNorm initialising from the data) gets
    ``FALLBACK_BATCH_SIZE`` points and ``FALLBACK_CHUNK_SIZE`` draws per pass instead.

    Example:
        >>> import pyro
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
        ...         pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x)
        >>> def guide(x):
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", pyro.distributions.Normal(x / 2, 0.7))
        >>> batch = Batch((torch.zeros(2),), {})
        >>> points, draws = choose_chunks(model, guide, batch, 1000, 1, memory_budget=2**20)
        >>> draws  # all 1000 draws of a point fit in one pass of 1 MiB
        1000
    """
    check_int(num_samples, "num_samples", 1)
    check_int(memory_budget, "memory_budget", 1)
    if batch_size is not None and chunk_size is not None:
        return batch_size, chunk_size
    probe = batch.map(lambda t: t[:2])
    n = len(probe)
    state = pyro.util.get_rng_state()
    probes: list[tuple[int, int]] = []  # (draws per point, peak bytes)
    try:
        for k in PROBE_DRAWS:
            if len(probes) >= 2 and probes[-1][1] >= memory_budget / 4:
                break
            probe_pass = partial(log_importance_weights, model, guide, probe, k, nesting)
            probes.append((k, peak_bytes(probe_pass, guard=True)))
    except StateChangeError:  # e.g. an ActNorm that initialises on the first batch it scores
        return (batch_size or FALLBACK_BATCH_SIZE, chunk_size or FALLBACK_CHUNK_SIZE)
    finally:
        pyro.util.set_rng_state(state)
    (few, small), (many, large) = probes[-2:]
    slope = (large - small) / ((many - few) * n)  # bytes per extra (draw, point)
    per_unit = max(1.0, slope if slope > 0 else large / (many * n))
    units = max(1, int(memory_budget // per_unit))
    if chunk_size is not None:
        return max(1, units // chunk_size), chunk_size
    draws = min(num_samples, max(1, units // (batch_size or 1)))
    passes = math.ceil(num_samples / draws)
    draws = math.ceil(num_samples / passes)  # even chunks: 334, 334, 332 rather than 400, 400, 200
    points = batch_size if batch_size is not None else max(1, units // draws)
    return points, draws


def draw_chunks(num_samples: int, chunk_size: int) -> list[int]:
    """The draws of each pass: ``chunk_size`` each, the rest in the last.

    Example:
        >>> draw_chunks(1000, 334)
        [334, 334, 332]
    """
    return [min(chunk_size, num_samples - start) for start in range(0, num_samples, chunk_size)]


def _modules_of(*fns: Callable) -> list[nn.Module]:
    """The ``nn.Module`` s behind callables: a module itself, or the owner of a bound method."""
    found: list[nn.Module] = []
    for fn in fns:
        owner = fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module) and all(owner is not m for m in found):
            found.append(owner)
    return found


@contextlib.contextmanager
def channels_last_convolutions(*fns: Callable, enabled: bool = True) -> Iterator[int]:
    """Within the block, the ``nn.Conv2d`` weights of the modules behind ``fns`` (see
    :func:`_modules_of`) on a CPU are laid out channels-last, so oneDNN runs those
    convolutions, and the layers after them, in its faster NHWC layout; the values are
    unchanged, and the layout is restored on exit. Yields the number of weights laid out.

    Only plain ``Conv2d`` weights are touched (not parametrized ones, nor other 4-D
    tensors, which code may ``.view``): ``conv2d`` takes any layout.

    Example:
        >>> conv = nn.Conv2d(2, 4, 3)
        >>> with channels_last_convolutions(conv) as count:
        ...     inside = conv.weight.is_contiguous(memory_format=torch.channels_last)
        >>> count, inside, conv.weight.is_contiguous()
        (1, True, True)
    """
    changed: list[tuple[nn.Parameter, Tensor]] = []
    if enabled:
        for owner in _modules_of(*fns):
            for module in owner.modules():
                weight = getattr(module, "weight", None)
                if (
                    type(module) is nn.Conv2d
                    and isinstance(weight, nn.Parameter)
                    and weight.device.type == "cpu"
                    and not weight.is_contiguous(memory_format=torch.channels_last)
                ):
                    changed.append((weight, weight.data))
                    weight.data = weight.data.contiguous(memory_format=torch.channels_last)
    try:
        yield len(changed)
    finally:
        for weight, original in changed:
            weight.data = original


def has_latent_sites(model: Callable, guide: Callable, batch: Batch) -> bool:
    """Whether the guide draws anything or the model, replayed on the guide's draws, has
    an unobserved sample site (else every importance weight is the same), checked on a
    trace without log-probabilities (no layer scores anything, so none initialises
    itself) and with the random state restored.

    Example:
        >>> import pyro
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", pyro.distributions.Normal(0.0, 1.0), obs=x)
        >>> has_latent_sites(model, lambda x: None, Batch((torch.zeros(2),), {}))
        False
    """
    state = pyro.util.get_rng_state()
    try:
        with poutine.block(), torch.no_grad():
            guide_trace = batch.call(poutine.trace(guide).get_trace)
            replayed = poutine.replay(model, trace=guide_trace)
            model_trace = batch.call(poutine.trace(replayed).get_trace)
    finally:
        pyro.util.set_rng_state(state)
    unobserved = any(not site["is_observed"] for site in sample_sites(model_trace).values())
    return unobserved or bool(sample_sites(guide_trace))
