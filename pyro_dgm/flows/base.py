r"""Flow distributions: a base pushed through transforms, and the module that owns them.

.. code-block:: python

    flow = MAF(2)
    pyro.module("flow", flow)
    with pyro.plate("data", len(x)):
        pyro.sample("x", flow(), obs=x)
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable, Iterator, Sequence

import pyro
import torch
from pyro.distributions import ConditionalTransformModule, Normal, TransformedDistribution
from pyro.nn import PyroModule
from pyro.poutine.runtime import am_i_wrapped
from torch import Tensor, nn
from torch.distributions import Distribution, Transform
from torch.distributions.transforms import _InverseTransform

from ..transforms.actnorm import ActNorm

__all__ = ["Flow", "FlowDistribution"]

# the method that converts a tensor to each dtype, for the error message's fix
_CONVERSIONS = {
    torch.float32: "float",
    torch.float64: "double",
    torch.float16: "half",
    torch.bfloat16: "bfloat16",
}


def _cache_holders(parts: Iterable[Transform]) -> Iterator[Transform]:
    """The transforms, nested ones included, that keep a one-entry ``(x, y)`` cache.

    The cache of ``t.inv`` is the one of ``t``; ``ComposeTransform`` parts and an
    ``IndependentTransform``'s base each keep their own.
    """
    seen: set[int] = set()
    stack = list(parts)
    while stack:
        t = stack.pop()
        if isinstance(t, _InverseTransform):
            t = t._inv
        if id(t) in seen:
            continue
        seen.add(id(t))
        if getattr(t, "_cache_size", 0) == 1:
            yield t
        stack.extend(getattr(t, "parts", ()))
        inner = getattr(t, "base_transform", None)
        if isinstance(inner, Transform):
            stack.append(inner)


def _modules_of(parts: Iterable[Transform]) -> Iterator[nn.Module]:
    """The modules holding the parameters of ``parts``: the parts that are modules, and
    those behind ``.inv``, inside a ``ComposeTransform`` or an ``IndependentTransform``."""
    for part in parts:
        if isinstance(part, nn.Module):
            yield part
        elif isinstance(part, _InverseTransform):
            yield from _modules_of([part._inv])
        else:
            yield from _modules_of(getattr(part, "parts", ()))
            inner = getattr(part, "base_transform", None)
            if isinstance(inner, Transform):
                yield from _modules_of([inner])


def _first_float_dtype(obj: object, depth: int = 0) -> torch.dtype | None:
    """The dtype of the first floating tensor a module or a distribution holds."""
    if isinstance(obj, FlowDistribution):
        return obj._dtype
    if isinstance(obj, nn.Module):
        for t in itertools.chain(obj.parameters(), obj.buffers()):
            if t.is_floating_point():
                return t.dtype
        return None
    if isinstance(obj, Distribution) and depth < 8:
        for value in vars(obj).values():
            if isinstance(value, Tensor) and value.is_floating_point():
                return value.dtype
            if isinstance(value, Distribution):
                found = _first_float_dtype(value, depth + 1)
                if found is not None:
                    return found
    return None


class FlowDistribution(TransformedDistribution):
    r"""Pyro's ``TransformedDistribution`` whose caches follow the parameters, with
    readable errors and moments that say why they are missing.

    .. math:: x = g_K \circ \dots \circ g_1(z), \quad z \sim p_Z, \qquad
        \log p(x) = \log p_Z(f(x)) + \log \left|\det \frac{\partial f(x)}{\partial x}\right| ,

    with :math:`f = g^{-1}`. ``ConditionalTransformModule``\ s among the transforms
    are conditioned on ``context``. Everything is Pyro's (``sample``, ``rsample``,
    ``log_prob``, ``expand``, ``to_event``, ``mask``), with three differences.

    *Caches.* torch keys a transform's cache by tensor identity alone, so a held
    distribution would score the same data tensor with the values of an earlier
    pass (stale after an optimizer step, or without a graph after a pass under
    ``torch.no_grad()``). Here the distribution recomputes from the current
    parameters, as zuko's do: ``log_prob`` of any value other than the
    distribution's own latest sample never reads a cache, and its latest sample is
    scored through the caches (one pass, no inverse: IAF's cheap scoring of its
    own samples, and the only way for planar and Sylvester steps) only while the
    parameters' version counters (``tensor._version``) and storage are those of
    the sampling pass and, when a gradient is needed now, the sample was drawn
    with one (``rsample``, not ``sample``). Otherwise that sample is scored
    through the inverses too; where there is none (planar, Sylvester), a sample
    drawn by ``sample()`` is scored through the cache of its pass, which holds no
    gradient. An optimizer that changes parameters without bumping their
    version counters (torch's ``fused=True`` kernels) defeats this check for the
    latest sample.

    *Errors.* A value whose event shape or dtype is not the flow's raises a
    ``ValueError`` that names both (and, for the dtype, the conversion to make),
    with or without Pyro's validation.

    *Moments.* :math:`\mathbb{E}[x] = \int g(z)\, p_Z(z)\, dz` has no closed form for
    a learned :math:`g`: ``mean``, ``variance`` and ``entropy`` raise an error that
    names the Monte Carlo estimate to use instead.

    Arguments:
        base_distribution: The distribution of :math:`z`.
        transforms: The transforms in generative order (applied to a base sample
            first to last); ``ConditionalTransformModule``\ s are conditioned on
            ``context``.
        validate_args: Pyro's argument and support validation.
        context: The context, of shape ``batch + (context_dim,)``, or ``None``.
        modules: The modules whose parameters the transforms read (the modules
            among ``transforms`` if ``None``); their versions stamp the caches.

    Example:
        >>> from pyro_dgm.transforms import affine_autoregressive
        >>> base = Normal(torch.zeros(2), torch.ones(2)).to_event(1)
        >>> d = FlowDistribution(base, [affine_autoregressive(2)])
        >>> x = d.rsample((3,))
        >>> d.log_prob(x).shape  # its own sample, through the cache
        torch.Size([3])
    """

    def __init__(
        self,
        base_distribution: Distribution,
        transforms: Transform | Sequence[Transform],
        validate_args: bool | None = None,
        *,
        context: Tensor | None = None,
        modules: Sequence[nn.Module] | None = None,
    ) -> None:
        parts = [transforms] if isinstance(transforms, Transform) else list(transforms)
        conditional = [p for p in parts if isinstance(p, ConditionalTransformModule)]
        if conditional and context is None:
            raise ValueError(
                f"context: expected a tensor for the conditional {type(conditional[0]).__name__},"
                " got None"
            )
        owners = list(_modules_of(parts)) if modules is None else list(modules)
        if conditional:
            parts = [
                p.condition(context) if isinstance(p, ConditionalTransformModule) else p
                for p in parts
            ]
        super().__init__(base_distribution, parts, validate_args=validate_args)
        self._owners = owners
        self._context = context
        self._holders = tuple(_cache_holders(self.transforms))
        dtype = None
        for owner in owners:
            dtype = _first_float_dtype(owner)
            if dtype is not None:
                break
        self._dtype = dtype if dtype is not None else _first_float_dtype(self.base_dist)
        self._tensors: list[Tensor] | None = None
        self._latest: tuple[weakref.ref, tuple, bool] | None = None

    def expand(
        self, batch_shape: torch.Size | Sequence[int], _instance: object = None
    ) -> FlowDistribution:
        new = self._get_checked_instance(FlowDistribution, _instance)
        new = super().expand(batch_shape, _instance=new)
        new._owners = self._owners
        new._context = self._context
        new._holders = self._holders
        new._dtype = self._dtype
        new._tensors = self._tensors
        new._latest = None
        return new

    def __getstate__(self) -> dict:
        # the latest sample is held by a weak reference, which does not pickle
        return {**self.__dict__, "_latest": None}

    # -- caches ----------------------------------------------------------------

    def _stamp(self) -> tuple[tuple, bool]:
        """The parameters' versions and storage, and whether a gradient is needed now."""
        tensors = self._tensors
        if tensors is None:  # once per distribution (and its expansions): a module walk
            tensors = [p for owner in self._owners for p in owner.parameters()]
            if self._context is not None:
                tensors.append(self._context)
            self._tensors = tensors
        versions = tuple((t._version, t.data_ptr()) for t in tensors)
        needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        return versions, needs_graph

    def _forget(self) -> None:
        """Empty the transforms' caches: the next pass recomputes everything."""
        for holder in self._holders:
            holder._cached_x_y = None, None
        self._latest = None

    def _remember(self, sample: Tensor, graph: bool) -> None:
        versions, needs_graph = self._stamp()
        self._latest = (weakref.ref(sample), versions, graph and needs_graph)

    def _freshness(self, value: Tensor) -> str | None:
        """``"cached"`` if ``value`` is this distribution's latest sample and its cache
        is valid now; ``"no graph"`` if it is valid but recorded without the gradient
        needed now; ``None`` otherwise."""
        if self._latest is None:
            return None
        ref, versions, had_graph = self._latest
        if ref() is not value:
            return None
        now, needs_graph = self._stamp()
        if now != versions:
            return None
        return "cached" if had_graph or not needs_graph else "no graph"

    def _snapshot(self) -> list[tuple[Transform, dict]]:
        # every cached entry of the transforms (torch's pair and the layers' own)
        return [
            (h, {k: v for k, v in vars(h).items() if "cache" in k or "memo" in k})
            for h in self._holders
        ]

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        self._forget()
        x = super().rsample(torch.Size(sample_shape))
        self._remember(x, graph=True)
        return x

    def sample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        self._forget()
        x = super().sample(torch.Size(sample_shape))
        self._remember(x, graph=False)
        return x

    # -- scoring -----------------------------------------------------------------

    def _check_value(self, value: object) -> None:
        event = tuple(self.event_shape)
        if not isinstance(value, Tensor):
            raise ValueError(
                f"value: expected a tensor of shape batch + {event}, got {type(value).__name__}"
            )
        k = len(event)
        if k and (value.dim() < k or tuple(value.shape[value.dim() - k :]) != event):
            raise ValueError(
                f"value: expected shape batch + {event} (the flow's event shape), "
                f"got {tuple(value.shape)}"
            )
        dtype = self._dtype
        if dtype is not None and value.dtype != dtype:
            to_flow = _CONVERSIONS.get(dtype)
            fix = f"x.{to_flow}()" if to_flow else f"x.to({dtype})"
            if value.dtype in _CONVERSIONS:
                fix += f", or the flow with flow.{_CONVERSIONS[value.dtype]}()"
            raise ValueError(
                f"value: expected dtype {dtype} (the flow's parameters), got {value.dtype}; "
                f"convert the value with {fix}"
            )

    def log_prob(self, value: Tensor) -> Tensor:
        self._check_value(value)
        freshness = self._freshness(value)
        if freshness == "cached":
            log_p = super().log_prob(value)
            # a cache recorded with a graph, read where no gradient is wanted
            return log_p if torch.is_grad_enabled() else log_p.detach()
        if freshness == "no graph":
            # drawn by sample(), scored where a gradient is needed: through the inverses
            saved, latest = self._snapshot(), self._latest
            self._forget()
            try:
                log_p = super().log_prob(value)
            except (NotImplementedError, KeyError):
                # no inverse (planar, Sylvester): only the pass that drew the sample
                # can score it, and it recorded no gradient
                for holder, state in saved:
                    holder.__dict__.update(state)
                self._latest = latest
                return super().log_prob(value)
            self._remember(value, graph=True)
            return log_p
        self._forget()
        return super().log_prob(value)

    # -- moments -------------------------------------------------------------------

    def _no_closed_form(self, what: str, estimate: str) -> NotImplementedError:
        return NotImplementedError(
            f"the {what} of a normalizing flow has no closed form (the transforms are "
            f"learned networks); estimate it from samples, e.g. {estimate}"
        )

    @property
    def mean(self) -> Tensor:
        raise self._no_closed_form("mean", "d.sample((n,)).mean(0)")

    @property
    def variance(self) -> Tensor:
        raise self._no_closed_form("variance", "d.sample((n,)).var(0)")

    def entropy(self) -> Tensor:
        raise self._no_closed_form("entropy", "-d.log_prob(d.sample((n,))).mean(0)")


class Flow(PyroModule):
    r"""A normalizing flow: a standard normal base pushed through transforms.

    .. math:: x = g_K \circ \dots \circ g_1(z), \quad z \sim \mathcal{N}(0, I), \quad
        \log p(x) = \log \mathcal{N}(f(x)) + \log \left|\det \frac{\partial f(x)}{\partial x}\right|

    Each transform's forward call is the generative direction :math:`z \to x`;
    ``log_prob`` applies the inverses. Conditional transforms
    (``ConditionalTransformModule``) are conditioned on the context given to
    the call. The module owns every parameter and the base's buffers, so
    ``pyro.module``, ``.to(device)``, ``.double()`` and ``state_dict`` see them.
    The distribution it returns (a :class:`FlowDistribution`) reads the current
    parameters whenever it scores or samples, so it may be held across
    optimizer steps.

    A flow is a ``PyroModule``: as an attribute of a user's ``PyroModule`` model or
    guide it registers its parameters itself (under its attribute path, the
    param store being the source of truth, as for a ``PyroModule``'s own
    parameters), so no ``pyro.module`` call is needed there (and none should be
    added under another name: the same tensors would be stepped twice). A
    stand-alone flow registers nothing by itself: call ``pyro.module(name, flow)``.

    Arguments:
        transforms: The layers, in generative order (applied to the base sample first to last).
        event_shape: The shape of one data point.

    Example:
        >>> from pyro_dgm.transforms import affine_autoregressive
        >>> flow = Flow([affine_autoregressive(2)], event_shape=(2,))
        >>> flow().sample((3,)).shape
        torch.Size([3, 2])
    """

    def __init__(self, transforms: Sequence[Transform], event_shape: Sequence[int] | int) -> None:
        super().__init__()
        shape = torch.Size([event_shape] if isinstance(event_shape, int) else event_shape)
        if len(shape) == 0 or any(s < 1 for s in shape):
            raise ValueError(
                f"event_shape must be a non-empty shape of positive sizes, got {shape}"
            )
        self.event_shape = shape
        self.parts = list(transforms)
        self.layers = nn.ModuleList(_modules_of(self.parts))
        # fixed with the parts, and needed at every call
        self._conditional = any(isinstance(p, ConditionalTransformModule) for p in self.parts)
        self.register_buffer("base_loc", torch.zeros(shape))
        self.register_buffer("base_scale", torch.ones(shape))

    @property
    def is_conditional(self) -> bool:
        return self._conditional

    def _register(self) -> None:
        """As a child of a ``PyroModule`` run by Pyro: register the layers (plain torch
        modules, which ``PyroModule`` itself would not see) under the attribute path."""
        if not (self._pyro_name and am_i_wrapped()):
            return
        # update_module_params makes the param store the source of truth, as it is
        # for a PyroModule's own parameters (a loaded param store is used)
        own = list(self.parameters())
        pyro.module(self._pyro_name, self, update_module_params=True)
        if any(a is not b for a, b in zip(own, self.parameters(), strict=True)):
            # parameters taken from the store are trained ones: a data-dependent
            # initialisation (ActNorm) must not overwrite them on the next batch
            for m in self.modules():
                if isinstance(m, ActNorm):
                    m.mark_initialized()

    def base_distribution(self, context: Tensor | None = None) -> Distribution:
        """The standard normal base, with the context's batch shape."""
        base = Normal(self.base_loc, self.base_scale).to_event(len(self.event_shape))
        return base if context is None else base.expand(context.shape[:-1])

    def forward(self, context: Tensor | None = None) -> FlowDistribution:
        """The flow's distribution; with a context of shape ``batch + (context_dim,)``,
        its batch shape is ``batch``."""
        self._register()
        if self.is_conditional and context is None:
            raise ValueError(f"{type(self).__name__} is conditional: call it with a context")
        if not self.is_conditional and context is not None:
            raise ValueError(f"{type(self).__name__} takes no context, got one")
        return FlowDistribution(self.base_distribution(context), self.parts, context=context)
