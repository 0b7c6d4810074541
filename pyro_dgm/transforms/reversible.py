r"""Memory-saving backpropagation through stacks of invertible layers.

Ordinary backpropagation keeps every layer's activations from the forward pass
until the backward pass, so memory grows linearly with depth. An invertible
layer's input is a function of its output, so it need not be kept: the backward
pass can rebuild it (Gomez et al., 2017, for RevNets; the same holds for every
layer of a normalizing flow with an exact inverse).

:class:`MemorySavingStack` runs its layers through custom ``torch.autograd.Function``\ s,
each over a few consecutive layers (:data:`CHUNK`). Their forward passes run the
layers under ``torch.no_grad()`` and keep nothing but the stack's output and the summed
log-det. The backward pass walks the layers from the last one run to the first; for
each it rebuilds the layer's input from its output with the exact inverse, re-runs
the layer with gradients on that input to get its local graph, and back-propagates
the output's gradient and the log-det's gradient through it to the input, the
parameters and the context; a chunk hands the input it rebuilt to the chunk before
it, and its parameters' gradients to autograd. At any time one layer's graph is
alive, so activation memory is that of one layer whatever the depth; the price is
one more pass of each layer (RevNet blocks, couplings and ActNorm rebuild their input
with the very network pass whose graph gives their gradients, or in closed form, so
for them the price is the forward pass under ``no_grad`` alone).

Both directions save memory: scoring data (the inverse, :math:`z = f(x)`, what
``log_prob`` and so maximum-likelihood training differentiate) and sampling (the
forward call, :math:`x = g(z)`, what ``rsample`` differentiates, for reverse KL and
flow guides).

.. math:: \frac{\partial L}{\partial h_{k}} = \frac{\partial L}{\partial h_{k-1}}
    \frac{\partial h_{k-1}}{\partial h_k}
    + \frac{\partial L}{\partial \log|\det J|}
    \frac{\partial \log|\det J_k|}{\partial h_k},
    \qquad h_k = g_k(h_{k-1}) \text{ rebuilt from } h_{k-1} \text{ (scoring).}

References:
    | The Reversible Residual Network: Backpropagation Without Storing Activations
      (Gomez et al., 2017)
    | https://arxiv.org/abs/1707.04585

    | i-RevNet: Deep Invertible Networks (Jacobsen et al., 2018)
    | https://arxiv.org/abs/1802.07088
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from pyro.distributions import ConditionalTransformModule, TransformModule, constraints
from pyro.distributions.conditional import ConditionalComposeTransformModule
from pyro.distributions.transforms import (
    BatchNorm,
    ConditionalAffineAutoregressive,
    ConditionalNeuralAutoregressive,
    ConditionalPlanar,
    ConditionalRadial,
    ConditionalSplineAutoregressive,
    Sylvester,
)
from pyro.distributions.transforms.planar import ConditionedPlanar
from pyro.distributions.transforms.radial import ConditionedRadial
from pyro.distributions.util import sum_rightmost
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.distributions import ComposeTransform, Transform
from torch.distributions.transforms import _InverseTransform

from ..utils.checks import check_choice, check_number
from ._events import real_event
from .sylvester import ConditionalSylvester, ConditionedSylvester
from .zuko import ConditionalZukoTransform, ConditionedZukoTransform, ZukoTransform

__all__ = [
    "ConditionalMemorySavingStack",
    "ConditionedMemorySavingStack",
    "MemorySavingPass",
    "MemorySavingStack",
    "ReconstructionError",
    "ReconstructionWarning",
    "memory_saving",
    "relative_drift",
]

#: The default bound of the relative reconstruction error of a stack's input.
DRIFT_TOLERANCE = 1e-3

# layers without an exact inverse, and what to say about them
_NO_INVERSE = (
    (ConditionedPlanar, "a planar flow has no closed-form inverse"),
    (ConditionalPlanar, "a planar flow has no closed-form inverse"),
    (ConditionedRadial, "a radial flow has no closed-form inverse"),
    (ConditionalRadial, "a radial flow has no closed-form inverse"),
    (Sylvester, "a Sylvester flow has no closed-form inverse"),
    (ConditionedSylvester, "a Sylvester flow has no closed-form inverse"),
    (ConditionalSylvester, "a Sylvester flow has no closed-form inverse"),
    (
        BatchNorm,
        (
            "batch normalisation uses the batch's statistics in training, so its output does "
            "not determine its input"
        ),
    ),
    (
        (ZukoTransform, ConditionedZukoTransform, ConditionalZukoTransform),
        (
            "zuko's layers invert sequentially (autoregressive) or by bisection (neural, "
            "unconstrained monotonic), not exactly in one pass"
        ),
    ),
)
_AUTOREGRESSIVE = (
    ConditionalAffineAutoregressive,
    ConditionalSplineAutoregressive,
    ConditionalNeuralAutoregressive,
)
_AUTOREGRESSIVE_REASON = (
    "an autoregressive layer is sequential in one direction (D network passes, or no "
    "inverse at all), and the memory-saving backward pass needs both"
)


class ReconstructionError(RuntimeError):
    r"""The backward pass rebuilt a stack's input too far from the input it was given.

    .. math:: \frac{\max |\hat x - x|}{\max |x|} > \texttt{drift_tolerance},

    with :math:`\hat x` the input rebuilt from the output: the gradients would be those
    of another input, so none are returned (``on_drift="raise"``).

    Example:
        >>> from pyro_dgm.transforms import ActNorm
        >>> shift, shrink = ActNorm(2), ActNorm(2)
        >>> with torch.no_grad():  # scoring shrinks x by e^-30, then adds 1: x is lost
        ...     _ = shrink.log_scale.fill_(30.0), shift.loc.fill_(-1.0)
        >>> shift.mark_initialized(); shrink.mark_initialized()
        >>> t = MemorySavingStack([shift, shrink])
        >>> x = torch.randn(3, 2, requires_grad=True)
        >>> relative_drift(t, x.detach())  # the input rebuilt from the output is 0
        1.0
        >>> t.inv(x).sum().backward()
        Traceback (most recent call last):
        ...
        pyro_dgm.transforms.reversible.ReconstructionError: MemorySavingStack: the backward ...
    """


class ReconstructionWarning(UserWarning):
    """Like :class:`ReconstructionError`, for ``on_drift="warn"``: the gradients are
    returned, computed at the rebuilt inputs.

    Example:
        >>> import warnings
        >>> from pyro_dgm.transforms import ActNorm
        >>> shift, shrink = ActNorm(2), ActNorm(2)
        >>> with torch.no_grad():  # scoring shrinks x by e^-30, then adds 1: x is lost
        ...     _ = shrink.log_scale.fill_(30.0), shift.loc.fill_(-1.0)
        >>> shift.mark_initialized(); shrink.mark_initialized()
        >>> t = MemorySavingStack([shift, shrink], on_drift="warn")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     t.inv(torch.randn(3, 2, requires_grad=True)).sum().backward()
        >>> [w.category.__name__ for w in caught]
        ['ReconstructionWarning']
    """


# ---------------------------------------------------------------------------
# the layers: flattening, checks, parameters, caches
# ---------------------------------------------------------------------------


def _flatten(parts: Iterable[object]) -> Iterator[object]:
    """The layers of nested compositions and stacks, in generative order."""
    for part in parts:
        if isinstance(part, (MemorySavingStack, ConditionalMemorySavingStack)):
            yield from part.parts
        elif isinstance(part, ConditionalComposeTransformModule):
            yield from _flatten(part.transforms)
        elif isinstance(part, ComposeTransform):
            yield from _flatten(part.parts)
        else:
            yield part


def _refusal(part: object) -> str | None:
    """Why ``part`` cannot run in a memory-saving stack, or ``None``."""
    inner = part._inv if isinstance(part, _InverseTransform) else part
    if not isinstance(inner, (Transform, ConditionalTransformModule)):
        return "it is not a transform"
    if getattr(inner, "autoregressive", False) or isinstance(inner, _AUTOREGRESSIVE):
        return _AUTOREGRESSIVE_REASON
    for kinds, reason in _NO_INVERSE:
        if isinstance(inner, kinds):
            return reason
    if not getattr(inner, "bijective", False):
        return "it is not bijective"
    if not isinstance(inner, nn.Module):
        learnable = [
            k for k, v in vars(inner).items() if isinstance(v, Tensor) and v.requires_grad
        ]
        if learnable:
            return (
                f"it holds learnable tensors ({', '.join(learnable)}) outside an nn.Module, "
                "which the rebuilding backward pass cannot give a gradient; make the layer a "
                "TransformModule"
            )
    return None


def _active_dropout(modules: Sequence[nn.Module]) -> bool:
    """Whether a module (or one inside it) in ``train()`` mode drops out units: the
    rebuilding backward pass re-runs each layer and would draw another mask."""
    for module in modules:
        for m in module.modules():
            rate = (
                m.p if isinstance(m, nn.modules.dropout._DropoutNd) else getattr(m, "dropout", 0)
            )
            if (
                m.training
                and isinstance(rate, float | int)
                and not isinstance(rate, bool)
                and rate > 0
            ):
                return True
    return False


def _checked_parts(transforms: object, conditional_allowed: bool) -> list[object]:
    items = [transforms] if isinstance(transforms, (Transform, nn.Module)) else transforms
    try:
        parts = list(_flatten(items))  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            f"transforms: expected a sequence of invertible transforms, got "
            f"{type(transforms).__name__}"
        ) from None
    if not parts:
        raise ValueError("transforms: expected at least one invertible transform, got none")
    for i, part in enumerate(parts):
        reason = _refusal(part)
        if reason is not None:
            raise ValueError(
                f"transforms[{i}]: {type(part).__name__} cannot train memory-saving: {reason}. "
                "A memory-saving stack takes layers with an exact one-pass inverse (couplings, "
                "ActNorm, invertible linear maps and 1x1 convolutions, Squeeze, RevNet blocks); "
                "run this layer outside the stack"
            )
        if isinstance(part, ConditionalTransformModule) and not conditional_allowed:
            raise ValueError(
                f"transforms[{i}]: {type(part).__name__} is conditional; a stack with "
                "conditional layers is a ConditionalMemorySavingStack (memory_saving() picks it)"
            )
    return parts


def _modules(part: object) -> list[nn.Module]:
    """The modules that hold a layer's parameters."""
    if isinstance(part, nn.Module):
        return [part]
    if isinstance(part, _InverseTransform):
        return _modules(part._inv)
    found: list[nn.Module] = []
    for inner in getattr(part, "parts", ()):
        found += _modules(inner)
    base = getattr(part, "base_transform", None)
    if isinstance(base, Transform):
        found += _modules(base)
    return found


def _event_dim(part: object) -> int:
    inner = part._inv if isinstance(part, _InverseTransform) else part
    return max(inner.domain.event_dim, inner.codomain.event_dim)  # type: ignore[union-attr]


def _drop_caches(t: object) -> None:
    """Forget the tensors a layer keeps from its last pass (torch's ``(x, y)`` pair and
    the layers' own ``_cached_*`` entries): kept, they would hold every layer's
    activations for as long as the layers live."""
    if isinstance(t, _InverseTransform):
        t = t._inv
    state = getattr(t, "__dict__", None)
    if state is None:
        return
    for key in state:  # values change, keys do not: iterating the dict itself is safe
        if key.startswith("_cached_"):
            state[key] = (None, None) if key == "_cached_x_y" else None
    for inner in state.get("parts", ()):
        _drop_caches(inner)
    base = state.get("base_transform")
    if isinstance(base, Transform):
        _drop_caches(base)


def _conditioned(parts: Sequence[object], context: Tensor | None) -> list[Transform]:
    return [
        p.condition(context) if isinstance(p, ConditionalTransformModule) else p  # type: ignore[misc]
        for p in parts
    ]


def _step(t: Transform, h: Tensor, inverse: bool, extra: int) -> tuple[Tensor, Tensor]:
    """One layer: its output and its (generative) log-det, summed over the ``extra``
    event dimensions of the stack that the layer's own event does not have."""
    if inverse:
        out = t.inv(h)
        log_det = t.log_abs_det_jacobian(out, h)
    else:
        out = t(h)
        log_det = t.log_abs_det_jacobian(h, out)
    return out, sum_rightmost(log_det, extra) if extra else log_det


def _rebuild(t: Transform, out: Tensor, inverse: bool) -> Tensor:
    """A layer's input from its output: the other direction of :func:`_step`."""
    return t(out) if inverse else t.inv(out)


def _fused(t: Transform, inverse: bool) -> tuple[Any, bool, float] | None:
    """A layer's own backward step (``_memory_saving_backward``: RevNet blocks and
    couplings), with the direction and log-det sign to call it with, or ``None``."""
    sign = 1.0
    if isinstance(t, _InverseTransform):
        t, inverse, sign = t._inv, not inverse, -1.0
    hook = getattr(t, "_memory_saving_backward", None)
    return None if hook is None else (hook, inverse, sign)


# ---------------------------------------------------------------------------
# the autograd function
# ---------------------------------------------------------------------------


class MemorySavingPass:
    """The layers of a memory-saving stack and how it runs them: what
    :class:`MemorySavingStack`, its conditioned copies and the memory-saving
    :class:`~pyro_dgm.transforms.MultiScaleLevel` share. It owns no parameters.

    Arguments:
        transforms: The layers in generative order (checked as the stack checks them).
        drift_tolerance: The largest relative reconstruction error accepted.
        on_drift: ``"raise"``, ``"warn"`` or ``"off"``.
        name: Who runs it, for the messages.
        conditional: Whether conditional layers are allowed.

    Example:
        >>> from pyro_dgm.transforms import ActNorm, revnet_block
        >>> p = MemorySavingPass([ActNorm(4), revnet_block(4, [8])])
        >>> p.order(inverse=True)  # scoring meets the last layer first
        [1, 0]
        >>> x = torch.randn(5, 4, requires_grad=True)
        >>> z, log_det = p.apply(x, None, inverse=True)  # keeps no activation for backward
        >>> z.shape, log_det.shape
        (torch.Size([5, 4]), torch.Size([5]))
    """

    def __init__(
        self,
        transforms: Sequence[object],
        drift_tolerance: float = DRIFT_TOLERANCE,
        on_drift: str = "raise",
        name: str = "MemorySavingStack",
        conditional: bool = False,
    ) -> None:
        self.parts = _checked_parts(transforms, conditional_allowed=conditional)
        self.drift_tolerance, self.on_drift = _check_options(drift_tolerance, on_drift)
        parts = self.parts
        ranks = [_event_dim(p) for p in parts]
        self.event_dim = max(ranks)
        self.extra = [self.event_dim - r for r in ranks]
        self.modules = [_modules(p) for p in parts]
        self.name = name

    def groups(self) -> tuple[list[Tensor], list[list[int]]]:
        """The trainable parameters (each once) and, per layer, the indices of its own."""
        params: list[Tensor] = []
        index: dict[int, int] = {}
        groups: list[list[int]] = []
        for modules in self.modules:
            own: list[int] = []
            for module in modules:
                for p in module.parameters():
                    if not p.requires_grad:
                        continue
                    if id(p) not in index:
                        index[id(p)] = len(params)
                        params.append(p)
                    if index[id(p)] not in own:
                        own.append(index[id(p)])
            groups.append(own)
        return params, groups

    def order(self, inverse: bool) -> list[int]:
        """The layers' indices in the order a pass meets them."""
        n = len(self.parts)
        return list(range(n - 1, -1, -1)) if inverse else list(range(n))

    def run(self, h: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        """The pass itself, in the current grad mode, keeping no layer's cache."""
        layers = _conditioned(self.parts, context)
        total: Tensor | None = None
        order = self.order(inverse)
        _drop_caches(layers[order[0]])  # a cache from elsewhere could hold this very input
        for i in order:
            t = layers[i]
            h, log_det = _step(t, h, inverse, self.extra[i])
            _drop_caches(t)
            total = log_det if total is None else total + log_det
        assert total is not None
        return h, total

    def apply(self, h: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        """The pass, memory-saving whenever a gradient is to be computed."""
        params, groups = self.groups()
        needed = torch.is_grad_enabled() and (
            h.requires_grad
            or (context is not None and context.requires_grad)
            or any(p.requires_grad for p in params)
        )
        if not needed:
            return self.run(h, context, inverse)
        for i, modules in enumerate(self.modules):
            if _active_dropout(modules):
                raise ValueError(
                    f"{self.name}: layer {i} ({type(self.parts[i]).__name__}) drops out units in "
                    "train() mode; the memory-saving backward pass re-runs every layer and would "
                    "draw another dropout mask, so its rebuilt inputs and gradients would be "
                    "wrong. Build its networks with dropout=0, or train without memory_saving"
                )
        order = self.order(inverse)
        chunks = [tuple(order[k : k + CHUNK]) for k in range(0, len(order), CHUNK)]
        slots = [_Slot() for _ in chunks[1:]]  # slot k: the input of chunk k + 1
        total: Tensor | None = None
        for k, indices in enumerate(chunks):
            own: list[Tensor] = []
            local: list[tuple[int, ...]] = []
            for i in indices:  # each layer's parameters, as positions among the chunk's own
                positions = []
                for j in groups[i]:
                    p = params[j]
                    if not any(p is q for q in own):
                        own.append(p)
                    positions.append(next(n for n, q in enumerate(own) if q is p))
                local.append(tuple(positions))
            slot_pair = (slots[k - 1] if k else None, slots[k] if k < len(slots) else None)
            h, total = _ChunkFunction.apply(
                self,
                indices,
                inverse,
                slot_pair,
                tuple(local),
                k == 0,
                k == len(chunks) - 1,
                h,
                total,
                context,
                *own,
            )
        assert total is not None
        return h, total

    def check_drift(self, rebuilt: Tensor, given: Tensor) -> None:
        """Compare the rebuilt input of the stack with the one it was given."""
        if self.on_drift == "off":
            return
        given = given.detach()
        given = given.expand_as(rebuilt) if given.shape != rebuilt.shape else given
        scale = float(given.abs().max()) if given.numel() else 0.0
        error = float((rebuilt - given).abs().max()) if given.numel() else 0.0
        drift = error / max(scale, torch.finfo(given.dtype).tiny)
        if drift <= self.drift_tolerance:
            return
        message = (
            f"{self.name}: the backward pass rebuilt the stack's input with a relative error "
            f"of {drift:.3g} (max |rebuilt - input| / max |input| = {error:.3g} / {scale:.3g}), "
            f"above drift_tolerance={self.drift_tolerance:g} ({rebuilt.dtype}); the gradients "
            "would be those of other inputs. A layer loses its input to rounding when it "
            "shrinks it far below the shifts added after it (an ActNorm whose data-to-latent "
            "scale is tiny, affine couplings whose scales sit at their bound). Train in "
            "float64, bound the scales, or train this stack with ordinary backpropagation "
            "(memory_saving=False)"
        )
        if self.on_drift == "warn":
            warnings.warn(message, ReconstructionWarning, stacklevel=2)
        else:
            raise ReconstructionError(message)


def _reduce(grad: Tensor | None, shape: torch.Size) -> Tensor | None:
    """A gradient summed down to ``shape`` (inputs broadcast against a context)."""
    if grad is None or grad.shape == shape:
        return grad
    return grad.sum_to_size(shape)


#: Layers per autograd function of a memory-saving pass (see :class:`_ChunkFunction`).
CHUNK = 8


class _Slot:
    """Where a chunk's backward step leaves the input it rebuilt: the output that the
    backward step of the chunk before it needs (only the stack's last output is kept)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Tensor | None = None


def _layer_backward(
    stack: MemorySavingPass,
    i: int,
    inverse: bool,
    h: Tensor,
    grad: Tensor,
    grad_log_det: Tensor,
    leaf_context: Tensor | None,
    leaves: list[Tensor],
    given: Tensor | None,
) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
    """One layer's backward step: from its output ``h`` and the gradients of its output
    and of the log-det, the rebuilt input (checked against ``given`` if any), the input's
    gradient and those of ``leaves``."""
    with torch.enable_grad():
        (layer,) = _conditioned([stack.parts[i]], leaf_context)
        fused = _fused(layer, inverse) if stack.extra[i] == 0 else None
        if fused is not None:
            hook, direction, sign = fused
            h_in, grad_in, leaf_grads = hook(h, grad, sign * grad_log_det, leaves, direction)
            h_in = h_in.detach()
            if given is not None:
                stack.check_drift(h_in, given)
            return h_in, grad_in, list(leaf_grads)
        with torch.no_grad():
            h_in = _rebuild(layer, h, inverse).detach()
            _drop_caches(layer)
        if given is not None:
            stack.check_drift(h_in, given)
        h_leaf = h_in.requires_grad_()
        o, log_det = _step(layer, h_leaf, inverse, stack.extra[i])
        _drop_caches(layer)
        outputs, grads = [o], [_reduce(grad, o.shape)]
        if log_det.requires_grad:
            outputs.append(log_det)
            grads.append(_reduce(grad_log_det, log_det.shape))
        grad_in, *leaf_grads = torch.autograd.grad(
            outputs, [h_leaf, *leaves], grads, allow_unused=True
        )
        return h_in.detach(), grad_in, leaf_grads


class _ChunkFunction(torch.autograd.Function):
    """A few consecutive layers of a memory-saving pass (:data:`CHUNK`). Forward: the
    layers under ``no_grad``, their log-dets added to the running total, keeping
    nothing (the last chunk keeps its output, the first a reference to the stack's
    input for the drift check). Backward: take the chunk's output from the slot that
    the next chunk's backward filled; for each layer from the last, rebuild its input,
    re-run it with gradients and back-propagate; leave the rebuilt input in the slot of
    the chunk before.

    Functions of a few layers, rather than one for the whole stack, so that parameter
    gradients go to autograd (to be accumulated, and freed) chunk by chunk, not all
    together at the end; not one per layer, so that autograd's bookkeeping per function
    stays small against the activations it saves."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        stack: MemorySavingPass,
        indices: tuple[int, ...],
        inverse: bool,
        slots: tuple[_Slot | None, _Slot | None],
        groups: tuple[tuple[int, ...], ...],
        first: bool,
        last: bool,
        h: Tensor,
        total: Tensor | None,
        context: Tensor | None,
        *params: Tensor,
    ) -> tuple[Tensor, Tensor]:
        x, total_in = h, total
        layers = _conditioned([stack.parts[i] for i in indices], context)
        _drop_caches(layers[0])
        for i, layer in zip(indices, layers, strict=True):
            h, log_det = _step(layer, h, inverse, stack.extra[i])
            _drop_caches(layer)
            total = log_det if total is None else total + log_det
        if h is x or h._base is x or (x._base is not None and h._base is x._base):
            h = h.clone()  # an output that is a view of the input would alias it
        assert total is not None
        total = total.expand(h.shape[: h.dim() - stack.event_dim]).clone()
        ctx.stack, ctx.indices, ctx.inverse, ctx.slots = stack, indices, inverse, slots
        ctx.groups, ctx.params, ctx.input_shape = groups, params, x.shape
        ctx.total_shape = None if total_in is None else total_in.shape
        given = x if first and stack.on_drift != "off" else None
        ctx.save_for_backward(given, h if last else None, context)
        return h, total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor, grad_total: Tensor) -> tuple[Tensor | None, ...]:
        stack: MemorySavingPass = ctx.stack
        params: tuple[Tensor, ...] = ctx.params
        slot_in, slot_out = ctx.slots
        given, out, context = ctx.saved_tensors
        if out is None:
            out, slot_out.value = slot_out.value, None
            if out is None:
                raise RuntimeError(
                    f"{stack.name}: the backward pass of layers {ctx.indices} found no output "
                    "to rebuild their input from; the layers after them were not "
                    "back-propagated through"
                )
        want_context = context is not None and ctx.needs_input_grad[10]
        leaf_context = None
        if context is not None:
            leaf_context = context.detach().requires_grad_(want_context)
        param_grads: list[Tensor | None] = [None] * len(params)
        context_grad: Tensor | None = None
        h = out.detach()
        for k in range(len(ctx.indices) - 1, -1, -1):
            own = [params[j] for j in ctx.groups[k]]
            leaves = ([leaf_context] if want_context else []) + own
            check = given if k == 0 else None
            h, grad, leaf_grads = _layer_backward(
                stack,
                ctx.indices[k],
                ctx.inverse,
                h,
                grad,
                grad_total,
                leaf_context,
                leaves,
                check,
            )
            grad = torch.zeros_like(h) if grad is None else grad
            if want_context:
                g, *leaf_grads = leaf_grads
                if g is not None:
                    context_grad = g if context_grad is None else context_grad + g
            for j, g in zip(ctx.groups[k], leaf_grads, strict=True):
                if g is not None:
                    param_grads[j] = g if param_grads[j] is None else param_grads[j] + g
        if slot_in is not None:
            slot_in.value = h
        grad_h = _reduce(grad, ctx.input_shape) if ctx.needs_input_grad[7] else None
        grad_total_in = None
        if ctx.total_shape is not None:
            grad_total_in = _reduce(grad_total, ctx.total_shape)
        return (None,) * 7 + (grad_h, grad_total_in, context_grad, *param_grads)


# ---------------------------------------------------------------------------
# the transforms
# ---------------------------------------------------------------------------


def _check_options(drift_tolerance: float, on_drift: str) -> tuple[float, str]:
    tol = check_number(drift_tolerance, "drift_tolerance", positive=True)
    return tol, check_choice(on_drift, "on_drift", ("raise", "warn", "off"))


class MemorySavingPassTransform:
    """``_call``, ``_inverse``, shapes and the cached log-det of a stack (mixed into
    the module and its conditioned copy)."""

    _stack: MemorySavingPass
    _context: Tensor | None

    def forward_shape(self, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        for part in self._stack.parts:  # a conditional layer keeps the shape
            shape = getattr(part, "forward_shape", tuple)(shape)
        return tuple(shape)

    def inverse_shape(self, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        for part in reversed(self._stack.parts):
            shape = getattr(part, "inverse_shape", tuple)(shape)
        return tuple(shape)

    def _call(self, z: Tensor) -> Tensor:
        x, log_det = self._stack.apply(z, self._context, inverse=False)
        self._cached_log_det = (z, x, log_det)
        return x

    def _inverse(self, x: Tensor) -> Tensor:
        z, log_det = self._stack.apply(x, self._context, inverse=True)
        self._cached_log_det = (z, x, log_det)
        return z

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        cached = self._cached_log_det
        if cached is not None and cached[0] is z and cached[1] is x:
            return cached[2]
        return self._stack.apply(x, self._context, inverse=True)[1]


class MemorySavingStack(MemorySavingPassTransform, TransformModule):
    r"""Invertible layers composed, trained with memory-saving backpropagation: the
    backward pass rebuilds each layer's input from its output instead of keeping it
    (Gomez et al., 2017; see :mod:`pyro_dgm.transforms.reversible`).

    .. math:: x = g_K \circ \dots \circ g_1(z), \qquad
        \log |\det J| = \textstyle\sum_k \log |\det J_{g_k}| ,

    the same function, inverse and log-det as ``ComposeTransformModule(layers)``;
    only the memory and the time of a gradient differ. Activation memory is that
    of one layer, whatever the depth; a gradient costs one more pass of each layer
    (RevNet blocks and couplings rebuild their input with the pass whose graph
    gives their gradients, so only their forward pass under ``no_grad`` is extra).
    Both directions save memory: scoring data (the inverse, the direction that
    maximum-likelihood training differentiates) and sampling (the forward call,
    which ``rsample`` differentiates). Without a gradient (``torch.no_grad()``,
    frozen parameters and inputs), the layers simply run.

    Layers without an exact one-pass inverse (planar, radial and Sylvester flows,
    autoregressive layers, batch normalisation, zuko's layers) are refused with a
    ``ValueError`` naming them. The networks must be deterministic (no dropout) and
    run in one precision: the backward pass re-runs them, without the random state or
    the ``autocast`` setting of the forward pass, and only first derivatives are
    available (a second backward pass raises). ActNorm initialises itself in the
    forward pass (the re-runs find it initialised), and every parameter receives its
    gradient once, through the inputs of the autograd functions, as with ordinary
    backpropagation (so ``torch.autograd.grad``, parameter hooks and Pyro's param store
    see the usual gradients).

    *Drift.* Rebuilt inputs differ from the true ones by rounding. The stack keeps a
    reference to the input it was given (no copy: it is held by its caller anyway)
    and compares it with the input the backward pass rebuilds, relative to its
    largest magnitude; above ``drift_tolerance`` it raises
    :class:`ReconstructionError` (``on_drift="raise"``), warns
    (:class:`ReconstructionWarning`, ``"warn"``, and the gradients are returned),
    or does not check (``"off"``, and then keeps no reference). Measured in float32 at
    depth 64 (a :class:`~pyro_dgm.flows.MultiScaleGlow` of 2 levels of 64 steps on 8x8
    digits after 150 Adam steps, each level's input of 256 digits rebuilt from its
    output): a relative error of 2e-6, 500 times below the default tolerance.
    Drift is harmful when a layer shrinks its input far below the shifts added after
    it: an ActNorm with a tiny data-to-latent scale (Glow's :math:`s = e^{-\ell}`), or
    affine couplings whose scales sit at their bound layer after layer; the
    information is then below float32's resolution and the rebuilt input is wrong
    (errors of 4e-3 and 7e-3 in ``tests/test_reversible.py``, which raise).

    Arguments:
        transforms: The layers in generative order, as for ``ComposeTransformModule``
            (compositions and stacks among them are flattened).
        drift_tolerance: The largest relative reconstruction error accepted.
        on_drift: ``"raise"``, ``"warn"`` or ``"off"``.

    References:
        | The Reversible Residual Network: Backpropagation Without Storing
          Activations (Gomez et al., 2017)
        | https://arxiv.org/abs/1707.04585

    Example:
        >>> from pyro_dgm.transforms import ActNorm, masked_affine_coupling, half_mask
        >>> layers = [ActNorm(4), masked_affine_coupling(4, half_mask(4, flip=True))]
        >>> t = MemorySavingStack(layers * 3)
        >>> x = torch.randn(8, 4)
        >>> z = t.inv(x)
        >>> loss = (z.pow(2).sum(-1) / 2 - t.log_abs_det_jacobian(z, x)).sum()
        >>> loss.backward()  # the inputs of the six layers are rebuilt, not kept
        >>> layers[0].loc.grad.shape
        torch.Size([4])
    """

    bijective = True

    def __init__(
        self,
        transforms: Sequence[Transform],
        drift_tolerance: float = DRIFT_TOLERANCE,
        on_drift: str = "raise",
    ) -> None:
        super().__init__(cache_size=1)
        self._stack = MemorySavingPass(transforms, drift_tolerance, on_drift)
        self.layers = nn.ModuleList(m for ms in self._stack.modules for m in ms)
        self._context = None
        self._cached_log_det: tuple[Tensor, Tensor, Tensor] | None = None
        self._constraint = real_event(self._stack.event_dim)

    @property
    def parts(self) -> list[object]:
        """The layers, in generative order."""
        return self._stack.parts

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._constraint

    def extra_repr(self) -> str:
        return (
            f"num_layers={len(self.parts)}, drift_tolerance={self._stack.drift_tolerance:g}, "
            f"on_drift={self._stack.on_drift!r}"
        )


class ConditionedMemorySavingStack(MemorySavingPassTransform, Transform):
    """A :class:`ConditionalMemorySavingStack` bound to a context, whose gradient the
    backward pass computes too (``condition(context)`` returns it).

    Arguments:
        stack: The stack's layers and how it runs them.
        context: The context, with shape ``batch + (context_dim,)``.

    Example:
        >>> from pyro_dgm.transforms import ActNorm, conditional_masked_affine_coupling
        >>> stack = ConditionalMemorySavingStack(
        ...     [ActNorm(3), conditional_masked_affine_coupling(3, context_dim=2)])
        >>> c = torch.randn(5, 2, requires_grad=True)
        >>> t = stack.condition(c)
        >>> t.inv(torch.randn(5, 3)).sum().backward()  # rebuilt, and back to the context
        >>> c.grad.shape
        torch.Size([5, 2])
    """

    bijective = True

    def __init__(self, stack: MemorySavingPass, context: Tensor) -> None:
        super().__init__(cache_size=1)
        self._stack = stack
        self._context = context
        self._cached_log_det = None
        self._constraint = real_event(stack.event_dim)

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._constraint


class ConditionalMemorySavingStack(ConditionalTransformModule):
    r"""The conditional twin of :class:`MemorySavingStack`: a stack with conditional
    layers (``ConditionalTransformModule``\ s, conditioned on the same context; other
    layers run as they are). ``condition(context)`` returns a
    :class:`ConditionedMemorySavingStack`; the backward pass back-propagates to the
    context too, so an amortized or a conditional flow trains memory-saving.

    Arguments:
        transforms: The layers in generative order.
        drift_tolerance: The largest relative reconstruction error accepted.
        on_drift: ``"raise"``, ``"warn"`` or ``"off"``.

    Example:
        >>> from pyro_dgm.transforms import ActNorm, conditional_masked_affine_coupling
        >>> t = ConditionalMemorySavingStack(
        ...     [ActNorm(3), conditional_masked_affine_coupling(3, context_dim=2)])
        >>> t.condition(torch.randn(5, 2)).inv(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """

    bijective = True

    def __init__(
        self,
        transforms: Sequence[Transform | ConditionalTransformModule],
        drift_tolerance: float = DRIFT_TOLERANCE,
        on_drift: str = "raise",
    ) -> None:
        super().__init__()
        self._stack = MemorySavingPass(
            transforms, drift_tolerance, on_drift, "ConditionalMemorySavingStack", conditional=True
        )
        self.layers = nn.ModuleList(m for ms in self._stack.modules for m in ms)
        self._constraint = real_event(self._stack.event_dim)

    @property
    def parts(self) -> list[object]:
        """The layers, in generative order."""
        return self._stack.parts

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return self._constraint

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return self._constraint

    def extra_repr(self) -> str:
        return f"num_layers={len(self.parts)}, drift_tolerance={self._stack.drift_tolerance:g}"

    forward_shape = MemorySavingPassTransform.forward_shape
    inverse_shape = MemorySavingPassTransform.inverse_shape

    def condition(self, context: Tensor) -> ConditionedMemorySavingStack:
        if not isinstance(context, Tensor) or context.dim() < 1:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(
                f"context: expected a tensor of shape batch + (context_dim,), got {shape}"
            )
        return ConditionedMemorySavingStack(self._stack, context)


def memory_saving(
    transforms: Sequence[Transform | ConditionalTransformModule],
    drift_tolerance: float = DRIFT_TOLERANCE,
    on_drift: str = "raise",
) -> MemorySavingStack | ConditionalMemorySavingStack:
    r"""Wrap invertible layers (generative order) in a :class:`MemorySavingStack`, or a
    :class:`ConditionalMemorySavingStack` if any of them is conditional.

    Example:
        >>> from pyro_dgm.flows import Flow
        >>> from pyro_dgm.transforms import revnet_block, ActNorm
        >>> flow = Flow([memory_saving([ActNorm(4), revnet_block(4, [8])] * 4)], event_shape=4)
        >>> flow().log_prob(torch.randn(3, 4)).shape
        torch.Size([3])
    """
    conditional = any(
        isinstance(p, ConditionalTransformModule)
        for p in _flatten([transforms] if isinstance(transforms, Transform) else transforms)
    )
    kind = ConditionalMemorySavingStack if conditional else MemorySavingStack
    return kind(transforms, drift_tolerance=drift_tolerance, on_drift=on_drift)


def relative_drift(stack: MemorySavingStack | MemorySavingPass, x: Tensor) -> float:
    r"""The relative error of rebuilding ``x`` through the stack (or a multi-scale
    level's pass, ``level._stack``) in its dtype, without a gradient: what the backward
    pass's check measures.

    .. math:: \delta = \frac{\max |g(f(x)) - x|}{\max |x|}

    Arguments:
        stack: A :class:`MemorySavingStack` or a :class:`MemorySavingPass`.
        x: Data, with the stack's event shape.

    Example:
        >>> from pyro_dgm.transforms import ActNorm, revnet_block
        >>> t = MemorySavingStack([ActNorm(4), revnet_block(4, [8])] * 4)
        >>> relative_drift(t, torch.randn(16, 4)) < 1e-5  # far below the default 1e-3
        True
    """
    run = (stack._stack if isinstance(stack, MemorySavingStack) else stack).run
    with torch.no_grad():
        z = run(x, None, inverse=True)[0]
        back = run(z, None, inverse=False)[0]
    return float((back - x).abs().max()) / max(float(x.abs().max()), math.ulp(0.0))
