"""RevNet blocks, i-RevNet's down-sampling and the memory-saving stack: the shared harness,
gradients equal to ordinary backpropagation, refusals, drift, and training through Pyro and fit."""

from __future__ import annotations

import copy
import warnings

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as pyro_T
import pytest
import torch
from harness import TransformCase, TransformHarness
from pyro.distributions import ConditionalTransformModule
from torch import Tensor, nn
from torch.distributions import Transform
from torch.distributions.transforms import AbsTransform, _InverseTransform

from pyro_dgm import image_flows, infer
from pyro_dgm.flows import Flow, MultiScaleGlow, MultiScaleRealNVP
from pyro_dgm.models import FlowModel
from pyro_dgm.transforms import (
    ActNorm,
    BatchNorm,
    ConditionalMemorySavingStack,
    InvertibleConv1x1,
    InvertibleLinear,
    MemorySavingStack,
    MultiScaleLevel,
    ReconstructionError,
    ReconstructionWarning,
    RevNetBlock,
    Squeeze,
    additive_coupling,
    affine_autoregressive,
    conditional_additive_coupling,
    conditional_affine_autoregressive,
    conditional_conv_revnet_block,
    conditional_masked_affine_coupling,
    conditional_planar,
    conditional_revnet_block,
    conditional_sylvester,
    conv_additive_coupling,
    conv_affine_coupling,
    conv_revnet_block,
    half_mask,
    invertible_downsampling,
    masked_affine_coupling,
    memory_saving,
    planar,
    radial,
    relative_drift,
    revnet_block,
    spline_autoregressive,
    sylvester,
    zuko_transform,
)
from pyro_dgm.utils.zuko_import import import_zuko

F64 = torch.float64


# ---------------------------------------------------------------------------
# stacks used throughout
# ---------------------------------------------------------------------------


def _vector_layers() -> list[Transform]:
    """Every vector layer kind, in generative order."""
    return [
        ActNorm(4),
        InvertibleLinear(4),
        masked_affine_coupling(4, half_mask(4), [8]),
        InvertibleLinear(4, "qr", bias=True),
        additive_coupling(4, half_mask(4, flip=True), [8]),
        revnet_block(4, [8]),
        pyro_T.affine_coupling(4, hidden_dims=[8]),  # Pyro's own: the generic backward step
        revnet_block(4, [8], split=1).inv,
    ]


def _image_layers() -> list[Transform]:
    """Every image layer kind on (8, 2, 2) noise to (8, 2, 2) images, via (2, 4, 4)."""
    return [
        conv_affine_coupling((8, 2, 2), "channel", hidden_channels=4, num_blocks=1),
        Squeeze().inv,
        ActNorm(2, event_dim=3),
        InvertibleConv1x1(2),
        conv_affine_coupling((2, 4, 4), hidden_channels=4, num_blocks=0),
        conv_revnet_block((2, 4, 4), hidden_channels=4, num_blocks=0),
        invertible_downsampling((2, 4, 4), hidden_channels=4, num_blocks=0),
        conv_additive_coupling((8, 2, 2), "channel", hidden_channels=4, num_blocks=0),
    ]


def _conditional_layers() -> list[Transform | ConditionalTransformModule]:
    return [
        ActNorm(4),
        conditional_masked_affine_coupling(4, 3, half_mask(4), [8]),
        InvertibleLinear(4),
        conditional_additive_coupling(4, 3, half_mask(4, flip=True), [8]),
        conditional_revnet_block(4, 3, [8]),
    ]


def _conditional_image_layers() -> list[Transform | ConditionalTransformModule]:
    return [ActNorm(2, event_dim=3), conditional_conv_revnet_block((2, 2, 2), 1, 4, 0)]


# ---------------------------------------------------------------------------
# the shared harness
# ---------------------------------------------------------------------------


class TestRevNetHarness(TransformHarness):
    CASES = [
        TransformCase("revnet_vector", lambda: revnet_block(4, [8]), (4,)),
        TransformCase("revnet_vector_odd_split", lambda: revnet_block(5, [8], split=3), (5,)),
        TransformCase(
            "revnet_vector_conditional",
            lambda: conditional_revnet_block(3, 2, [8]),
            (3,),
            context_dim=2,
        ),
        TransformCase("revnet_image", lambda: conv_revnet_block((3, 4, 4), 4, 1), (3, 4, 4)),
        TransformCase(
            "revnet_image_conditional",
            lambda: conditional_conv_revnet_block((2, 2, 4), 1, 4, 0),
            (2, 2, 4),
            context_dim=8,
        ),
        TransformCase(
            "invertible_downsampling",
            lambda: invertible_downsampling((3, 4, 2), hidden_channels=4, num_blocks=0),
            (3, 4, 2),
        ),
        TransformCase(
            "memory_saving_vector",
            lambda: MemorySavingStack(_vector_layers()),
            (4,),
            data_init=True,
        ),
        TransformCase(
            "memory_saving_image",
            lambda: MemorySavingStack(_image_layers()),
            (8, 2, 2),
            data_init=True,
        ),
        TransformCase(
            "memory_saving_conditional",
            lambda: ConditionalMemorySavingStack(_conditional_layers()),
            (4,),
            context_dim=3,
        ),
        TransformCase(
            "memory_saving_conditional_image",
            lambda: ConditionalMemorySavingStack(_conditional_image_layers()),
            (2, 2, 2),
            context_dim=4,
        ),
    ]


# ---------------------------------------------------------------------------
# gradients equal to ordinary backpropagation (float64, relative 1e-6)
# ---------------------------------------------------------------------------


def _perturbed(layers: list, scale: float = 0.1, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    for layer in layers:
        module = layer._inv if isinstance(layer, _InverseTransform) else layer
        if isinstance(module, nn.Module):
            module.double()
            with torch.no_grad():
                for p in module.parameters():
                    p.add_(scale * torch.randn(p.shape, generator=g, dtype=F64))
    return layers


def _ordinary(parts: list, h: Tensor, context: Tensor | None, inverse: bool) -> tuple:
    """The same layers run one after the other with ordinary backpropagation."""
    layers = [
        p.condition(context) if isinstance(p, ConditionalTransformModule) else p for p in parts
    ]
    total = 0.0
    for t in reversed(layers) if inverse else layers:
        out = t.inv(h) if inverse else t(h)
        total = total + (
            t.log_abs_det_jacobian(out, h) if inverse else t.log_abs_det_jacobian(h, out)
        )
        h = out
    return h, total


def _stack_pass(stack: object, h: Tensor, context: Tensor | None, inverse: bool) -> tuple:
    t = stack.condition(context) if context is not None else stack
    if inverse:
        z = t.inv(h)
        return z, t.log_abs_det_jacobian(z, h)
    x = t(h)
    return x, t.log_abs_det_jacobian(h, x)


def _relative(a: Tensor | None, b: Tensor | None) -> float:
    """``|a - b| / |b|``; a gradient of rounding size (``|b|`` below 1e-9: a parameter the
    output does not depend on, such as a hidden layer behind a zero last layer) is
    compared absolutely."""
    assert a is not None and b is not None, "a gradient is missing"
    diff, ref = float((a - b).norm()), float(b.norm())
    return diff / ref if ref > 1e-9 else diff


def _compare(make: object, shape: tuple, context_dim: int | None, inverse: bool) -> None:
    layers = _perturbed(make())
    twins = copy.deepcopy(layers)
    stack = memory_saving(layers)
    g = torch.Generator().manual_seed(1)
    if inverse:  # scoring starts from the data side
        shape = stack.forward_shape(shape)
    x = torch.randn(5, *shape, generator=g, dtype=F64).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    c = c2 = None
    if context_dim is not None:
        c = torch.randn(5, context_dim, generator=g, dtype=F64).requires_grad_()
        c2 = c.detach().clone().requires_grad_()
    out, log_det = _stack_pass(stack, x, c, inverse)
    out2, log_det2 = _ordinary(twins, x2, c2, inverse)
    w = torch.randn(out.shape, generator=g, dtype=F64)
    v = torch.arange(1.0, 6.0, dtype=F64)
    ((out * w).sum() + (log_det * v).sum()).backward()
    ((out2 * w).sum() + (log_det2 * v).sum()).backward()
    assert torch.allclose(out, out2, rtol=1e-10, atol=1e-12)
    assert torch.allclose(log_det, log_det2, rtol=1e-10, atol=1e-10)
    assert _relative(x.grad, x2.grad) < 1e-6, "input gradient"
    if c is not None:
        assert _relative(c.grad, c2.grad) < 1e-6, "context gradient"
    mine = [p for m in stack.layers for p in m.parameters()]
    theirs = [
        p
        for t in twins
        if isinstance(t._inv if isinstance(t, _InverseTransform) else t, nn.Module)
        for p in (t._inv if isinstance(t, _InverseTransform) else t).parameters()
    ]
    assert len(mine) == len(theirs)
    for p, q in zip(mine, theirs, strict=True):
        assert _relative(p.grad, q.grad) < 1e-6, f"parameter of shape {tuple(p.shape)}"


LAYER_KINDS = {
    "additive_coupling": (lambda: [additive_coupling(4, hidden_dims=[8])], (4,), None),
    "affine_coupling": (lambda: [masked_affine_coupling(4, hidden_dims=[8])], (4,), None),
    "pyro_affine_coupling": (lambda: [pyro_T.affine_coupling(4, hidden_dims=[8])], (4,), None),
    "actnorm": (lambda: [ActNorm(3)], (3,), None),
    "actnorm_image": (lambda: [ActNorm(2, event_dim=3)], (2, 3, 3), None),
    "linear_lu": (lambda: [InvertibleLinear(3)], (3,), None),
    "linear_qr_bias": (lambda: [InvertibleLinear(3, "qr", bias=True)], (3,), None),
    "conv1x1": (lambda: [InvertibleConv1x1(3)], (3, 2, 2), None),
    "squeeze": (lambda: [Squeeze(), ActNorm(4, event_dim=3)], (1, 4, 4), None),
    "revnet": (lambda: [revnet_block(5, [8])], (5,), None),
    "revnet_image": (lambda: [conv_revnet_block((2, 4, 4), 4, 1)], (2, 4, 4), None),
    "downsampling": (lambda: [invertible_downsampling((2, 4, 4), 4, 0)], (2, 4, 4), None),
    "conditional_affine": (
        lambda: [conditional_masked_affine_coupling(4, 2, hidden_dims=[8])],
        (4,),
        2,
    ),
    "conditional_additive": (lambda: [conditional_additive_coupling(4, 2, None, [8])], (4,), 2),
    "conditional_revnet": (lambda: [conditional_revnet_block(4, 2, [8])], (4,), 2),
    "conditional_revnet_image": (lambda: _conditional_image_layers(), (2, 2, 2), 4),
    "deep_vector": (lambda: _vector_layers() * 1 + _vector_layers(), (4,), None),
    "deep_image": (_image_layers, (8, 2, 2), None),
    "deep_conditional": (lambda: _conditional_layers() + _conditional_layers(), (4,), 3),
}


@pytest.mark.parametrize("inverse", [True, False], ids=["scoring", "sampling"])
@pytest.mark.parametrize("kind", list(LAYER_KINDS))
def test_gradients_equal_ordinary_backpropagation(kind: str, inverse: bool) -> None:
    make, shape, context_dim = LAYER_KINDS[kind]
    _compare(make, shape, context_dim, inverse)


@pytest.mark.parametrize("preset", [MultiScaleGlow, MultiScaleRealNVP])
def test_multiscale_flows_memory_saving_equal_ordinary(preset: type) -> None:
    """Same parameters, the same density, the same gradients (scoring and sampling)."""
    torch.manual_seed(0)
    ordinary = preset((1, 8, 8), num_levels=2, num_steps=3, hidden_channels=4).double()
    with torch.no_grad():
        ordinary().log_prob(torch.rand(16, 1, 8, 8, dtype=F64))  # ActNorm's initialisation
        for p in ordinary.parameters():
            p.add_(0.05 * torch.randn_like(p))
    saving = preset((1, 8, 8), num_levels=2, num_steps=3, hidden_channels=4, memory_saving=True)
    saving.double().load_state_dict(ordinary.state_dict())
    assert saving.memory_saving and not ordinary.memory_saving
    x = torch.rand(6, 1, 8, 8, dtype=F64)
    lp, lp2 = saving().log_prob(x), ordinary().log_prob(x)
    assert torch.allclose(lp, lp2, rtol=1e-12, atol=1e-10)
    lp.sum().backward()
    lp2.sum().backward()
    for (name, p), q in zip(saving.named_parameters(), ordinary.parameters(), strict=True):
        assert _relative(p.grad, q.grad) < 1e-6, name
    saving.zero_grad()
    ordinary.zero_grad()
    eps = torch.randn(4, 1, 8, 8, dtype=F64)
    (saving.transform(eps) ** 2).sum().backward()
    (ordinary.transform(eps) ** 2).sum().backward()
    for (name, p), q in zip(saving.named_parameters(), ordinary.parameters(), strict=True):
        if q.grad.norm() > 0:
            assert _relative(p.grad, q.grad) < 1e-6, name


def test_memory_saving_keeps_no_activations_for_the_backward_pass() -> None:
    """What autograd saves for the backward pass does not grow with depth (it does for
    ordinary backpropagation), and no layer keeps a cached activation afterwards."""

    def saved_numel(flow: MultiScaleGlow) -> int:
        sizes: list[int] = []

        def pack(t: Tensor) -> Tensor:
            sizes.append(t.numel())
            return t

        x = torch.rand(8, 1, 8, 8)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            flow().log_prob(x).sum()
        return sum(sizes)

    sizes = {}
    for saving in (True, False):
        for depth in (2, 6):
            torch.manual_seed(0)
            flow = MultiScaleGlow((1, 8, 8), 2, depth, hidden_channels=4, memory_saving=saving)
            sizes[saving, depth] = saved_numel(flow)
    assert sizes[True, 2] == sizes[True, 6]
    assert sizes[False, 6] > 2 * sizes[False, 2] > 0
    assert sizes[True, 6] < sizes[False, 6] / 5
    # the layers' own caches are empty after a pass (they would hold every activation)
    flow = MultiScaleGlow((1, 8, 8), 2, 3, hidden_channels=4, memory_saving=True)
    flow().log_prob(torch.rand(4, 1, 8, 8)).sum().backward()
    for module in flow.modules():
        for key, value in vars(module).items():
            if key.startswith("_cached_") and module is not flow.transform:
                assert value in (None, (None, None)), f"{type(module).__name__}.{key}"


# ---------------------------------------------------------------------------
# parameters, ActNorm, Pyro's SVI and fit
# ---------------------------------------------------------------------------


def _digit_like(n: int) -> Tensor:
    g = torch.Generator().manual_seed(0)
    blob = torch.zeros(1, 8, 8)
    blob[:, 2:6, 3:5] = 0.7
    return (blob + 0.3 * torch.rand(n, 1, 8, 8, generator=g)).double()


def test_svi_gradients_reach_each_parameter_once() -> None:
    """Through pyro.module and Trace_ELBO, the gradients are those of ordinary
    backpropagation: not doubled by the param store, not lost."""
    grads = {}
    for saving in (True, False):
        torch.manual_seed(0)
        pyro.clear_param_store()
        flow = MultiScaleGlow((1, 8, 8), 2, 2, hidden_channels=4, memory_saving=saving).double()
        pair = FlowModel(flow)
        x = _digit_like(8)
        with torch.no_grad():
            flow().log_prob(x)
        params = pyro.infer.Trace_ELBO().loss_and_grads(pair.model, pair.guide, x)
        del params
        grads[saving] = [p.grad.clone() for p in flow.parameters()]
        assert len(pyro.get_param_store()) == len(grads[saving])
    for a, b in zip(grads[True], grads[False], strict=True):
        assert _relative(a, b) < 1e-6


def test_actnorm_initialises_once_in_a_memory_saving_step(monkeypatch) -> None:
    calls = []
    original = ActNorm._initialize

    def counting(self: ActNorm, x: Tensor) -> None:
        calls.append(self)
        original(self, x)

    monkeypatch.setattr(ActNorm, "_initialize", counting)
    flow = MultiScaleGlow((1, 8, 8), 2, 3, hidden_channels=4, memory_saving=True)
    actnorms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    x = torch.rand(16, 1, 8, 8)
    loss = -flow().log_prob(x).mean()
    after_forward = [m.loc.detach().clone() for m in actnorms]
    loss.backward()
    assert sorted(map(id, calls)) == sorted(map(id, actnorms))  # each once
    for m, loc in zip(actnorms, after_forward, strict=True):
        assert torch.equal(m.loc.detach(), loc)  # the backward pass re-ran, did not re-initialise
    # the first level's first ActNorm standardised the squeezed data it met
    first = flow.transform.levels[0].post_parts[0]
    squeezed = Squeeze()(x)
    assert torch.allclose(first.loc, squeezed.mean(dim=(0, 2, 3)), atol=1e-5)


def test_one_sgd_step_of_fit_equals_ordinary_backpropagation() -> None:
    """fit's optimizer sees the gradients of ordinary backpropagation (SGD: a doubled or
    missing gradient would move the parameters by twice or none of the step)."""
    x = _digit_like(32)
    after = {}
    for saving in (True, False):
        torch.manual_seed(0)
        pyro.clear_param_store()
        flow = MultiScaleGlow((1, 8, 8), 2, 2, hidden_channels=4, memory_saving=saving).double()
        pair = FlowModel(flow)
        infer.fit(
            pair.model,
            pair.guide,
            x,
            validation=None,
            epochs=1,
            batch_size=32,
            optimizer=torch.optim.SGD,
            lr=1e-3,
            clip_norm=None,
            seed=0,
            progress=False,
        )
        after[saving] = [p.detach().clone() for p in flow.parameters()]
    torch.manual_seed(0)
    before = [p.detach() for p in MultiScaleGlow((1, 8, 8), 2, 2, hidden_channels=4).parameters()]
    moved = 0
    for a, b, c in zip(after[True], after[False], before, strict=True):
        step_a, step_b = a - c.double(), b - c.double()
        if step_b.norm() > 0:
            moved += 1
            assert _relative(step_a, step_b) < 1e-6
    assert moved > 10


def test_a_deep_glow_trains_memory_saving_through_fit() -> None:
    torch.manual_seed(0)
    flow = MultiScaleGlow((1, 8, 8), 2, 16, hidden_channels=4, memory_saving=True)
    pair = FlowModel(flow)
    history = infer.fit(
        pair.model,
        pair.guide,
        _digit_like(64).float(),
        validation=None,
        epochs=3,
        batch_size=32,
        lr=3e-3,
        progress=False,
        seed=0,
    )
    assert history.train_loss[-1] < history.train_loss[0]


def test_conditional_flow_trains_memory_saving_through_svi() -> None:
    """A conditional stack inside a flow distribution: the context's gradient reaches the
    network that computes it, and SVI lowers the loss."""
    torch.manual_seed(0)
    encoder = nn.Linear(2, 3)
    flow = Flow([memory_saving(_conditional_layers())], event_shape=(4,))
    x, labels = torch.randn(64, 4) + 1.0, torch.randn(64, 2)

    def model(x: Tensor, labels: Tensor) -> None:
        pyro.module("flow", flow)
        pyro.module("encoder", encoder)
        with pyro.plate("data", len(x)):
            pyro.sample("x", flow(encoder(labels)), obs=x)

    svi = pyro.infer.SVI(
        model, lambda x, labels: None, pyro.optim.Adam({"lr": 1e-2}), pyro.infer.Trace_ELBO()
    )
    before = encoder.weight.detach().clone()
    losses = [svi.step(x, labels) for _ in range(15)]
    assert losses[-1] < losses[0]
    assert not torch.allclose(encoder.weight, before)  # the context's gradient reached it


def test_state_dicts_move_between_memory_saving_and_ordinary() -> None:
    torch.manual_seed(0)
    saving = MultiScaleRealNVP((1, 4, 4), 2, 1, hidden_channels=4, memory_saving=True)
    x = torch.rand(4, 1, 4, 4)
    lp = saving().log_prob(x)
    ordinary = MultiScaleRealNVP((1, 4, 4), 2, 1, hidden_channels=4)
    ordinary.load_state_dict(saving.state_dict())
    assert torch.allclose(ordinary().log_prob(x), lp, atol=1e-5)
    ordinary.memory_saving = True
    assert ordinary.transform.levels[0].memory_saving
    # the former names in image_flows are the same classes
    assert image_flows.Glow((1, 4, 4), 1, 1, hidden_channels=4, memory_saving=True).memory_saving
    assert image_flows.RealNVP(
        (1, 4, 4), 1, 1, hidden_channels=4, memory_saving=True
    ).memory_saving


def test_autograd_grad_and_parameter_hooks_see_the_usual_gradients() -> None:
    layers = _perturbed(_vector_layers())
    twins = copy.deepcopy(layers)
    stack = MemorySavingStack(layers)
    x = torch.randn(6, 4, dtype=F64)
    params = list(stack.parameters())
    seen = []
    params[0].register_hook(lambda g: seen.append(g.clone()))
    z = stack.inv(x)
    grads = torch.autograd.grad((z.pow(2).sum() - stack.log_abs_det_jacobian(z, x).sum()), params)
    z2, log_det2 = _ordinary(twins, x, None, inverse=True)
    theirs = [
        p for t in twins for p in (t._inv if isinstance(t, _InverseTransform) else t).parameters()
    ]
    grads2 = torch.autograd.grad(z2.pow(2).sum() - log_det2.sum(), theirs)
    for a, b in zip(grads, grads2, strict=True):
        assert _relative(a, b) < 1e-6
    assert len(seen) == 1 and torch.equal(seen[0], grads[0])
    assert all(p.grad is None for p in params)  # autograd.grad accumulates nothing


def test_double_backward_is_refused() -> None:
    stack = MemorySavingStack([revnet_block(4, [8])])
    x = torch.randn(3, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(stack.inv(x).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        grad.sum().backward()


def test_without_a_gradient_the_layers_simply_run() -> None:
    stack = MemorySavingStack([revnet_block(4, [8]), ActNorm(4)])
    with torch.no_grad():
        z = stack.inv(torch.randn(3, 4))
    assert z.grad_fn is None
    z = stack.inv(torch.randn(3, 4))
    assert type(z.grad_fn).__name__ == "_ChunkFunctionBackward"


# ---------------------------------------------------------------------------
# refusals
# ---------------------------------------------------------------------------


def _zuko_layer() -> Transform:
    zuko = import_zuko()
    return zuko_transform(zuko.flows.MAF(3, transforms=1, hidden_features=[8]).transform)


REFUSED = {
    "Planar": (lambda: planar(3), "no closed-form inverse"),
    "ConditionalPlanar": (lambda: conditional_planar(3, 2), "no closed-form inverse"),
    "Radial": (lambda: radial(3), "no closed-form inverse"),
    "Sylvester": (lambda: sylvester(3), "no closed-form inverse"),
    "ConditionalSylvester": (lambda: conditional_sylvester(3, 2), "no closed-form inverse"),
    "AffineAutoregressive": (lambda: affine_autoregressive(3), "autoregressive"),
    "_InverseTransform": (lambda: affine_autoregressive(3).inv, "autoregressive"),  # MAF
    "ConditionalAffineAutoregressive": (
        lambda: conditional_affine_autoregressive(3, 2),
        "autoregressive",
    ),
    "SplineAutoregressive": (lambda: spline_autoregressive(3), "autoregressive"),
    "BatchNorm": (lambda: BatchNorm(3), "batch's statistics"),
    "ZukoTransform": (_zuko_layer, "zuko"),
    "AbsTransform": (AbsTransform, "not bijective"),
    "Linear": (lambda: nn.Linear(3, 3), "not a transform"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_layers_without_an_exact_inverse_are_refused(name: str) -> None:
    make, reason = REFUSED[name]
    with pytest.raises(ValueError, match=rf"transforms\[1\]: {name} cannot train memory-saving"):
        memory_saving([ActNorm(3), make()])
    with pytest.raises(ValueError, match=reason):
        memory_saving([ActNorm(3), make()])


def test_transforms_sylvester_is_pyros_helper_not_the_submodule() -> None:
    """Importing the submodule ``transforms.sylvester`` had rebound the exported name."""
    import pyro_dgm.transforms as T

    assert T.sylvester is pyro_T.sylvester
    assert isinstance(T.sylvester(3), pyro_T.Sylvester)


def test_bad_stacks_and_options_are_named() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MemorySavingStack([])
    with pytest.raises(ValueError, match="is conditional.*ConditionalMemorySavingStack"):
        MemorySavingStack([conditional_revnet_block(4, 2, [8])])
    with pytest.raises(ValueError, match="drift_tolerance: expected a positive number"):
        MemorySavingStack([ActNorm(2)], drift_tolerance=-1.0)
    with pytest.raises(ValueError, match="on_drift: expected one of"):
        MemorySavingStack([ActNorm(2)], on_drift="ignore")
    with pytest.raises(ValueError, match="transforms\\[0\\]: Planar"):
        MultiScaleLevel((1, 2, 2), [planar(1)], squeeze=False, split=False, memory_saving=True)
    with pytest.raises(ValueError, match="memory_saving: expected True or False"):
        MultiScaleGlow((1, 4, 4), 1, 1, hidden_channels=4, memory_saving="yes")
    with pytest.raises(ValueError, match="context: expected a tensor"):
        ConditionalMemorySavingStack(_conditional_layers()).condition(None)


def test_revnet_arguments_and_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="num_features: expected an int >= 2"):
        revnet_block(1)
    with pytest.raises(ValueError, match=r"split: expected an int in \[1, 3\]"):
        revnet_block(4, split=4)
    with pytest.raises(ValueError, match="even H and W"):
        invertible_downsampling((2, 3, 4))
    with pytest.raises(ValueError, match=r"x: expected 4 features at dimension -1"):
        revnet_block(4)(torch.randn(2, 5))
    bad = RevNetBlock(nn.Linear(2, 3), nn.Linear(2, 2), 4)
    with pytest.raises(
        ValueError, match="the network F of RevNetBlock: expected an output with 2"
    ):
        bad(torch.randn(2, 4))


def test_revnet_block_computes_the_papers_equations() -> None:
    torch.manual_seed(0)
    f, g = nn.Linear(2, 3), nn.Linear(3, 2)
    t = RevNetBlock(f, g, 5, split=3)
    x = torch.randn(4, 5)
    x1, x2 = x[:, :3], x[:, 3:]
    y1 = x1 + f(x2)
    y2 = x2 + g(y1)
    assert torch.allclose(t(x), torch.cat([y1, y2], -1))
    assert torch.allclose(t._inverse(t(x)), x, atol=1e-6)
    down = invertible_downsampling((2, 4, 4), hidden_channels=4)
    with torch.no_grad():
        for p in down.parameters():
            p.add_(0.1 * torch.randn_like(p))
    img = torch.randn(3, 2, 4, 4)
    y = down(img)
    squeeze = Squeeze()
    assert torch.equal(y[:, :4], squeeze(img[:, 1:]))
    assert torch.allclose(y[:, 4:], squeeze(img[:, :1]) + down.f(squeeze(img[:, 1:])))


# ---------------------------------------------------------------------------
# drift
# ---------------------------------------------------------------------------


def test_float32_drift_at_depth_64_is_far_below_the_tolerance() -> None:
    """The docstring's measurement, on a vector stack of 64 Glow steps (192 layers)."""
    torch.manual_seed(0)
    layers: list[Transform] = []
    for k in range(64):
        layers += [
            ActNorm(8),
            InvertibleLinear(8),
            masked_affine_coupling(8, half_mask(8, flip=k % 2 == 1), [16]),
        ]
    stack = MemorySavingStack(layers)
    x = torch.randn(128, 8)
    with torch.no_grad():
        stack.inv(x)  # ActNorm's initialisation
        for layer in layers[2::3]:
            for p in layer.parameters():
                p.add_(0.01 * torch.randn_like(p))
    drift = relative_drift(stack, x)
    assert 0 < drift < 1e-4


def _tiny_actnorm_stack(on_drift: str = "raise") -> tuple[MemorySavingStack, ActNorm]:
    """An ActNorm that shrinks its input by e^-12 (Glow's s = e^-l), then an additive
    coupling that adds shifts of order 1: the input falls below float32's resolution."""
    torch.manual_seed(0)
    norm, coupling = ActNorm(4), additive_coupling(4, hidden_dims=[8])
    with torch.no_grad():
        norm.log_scale.fill_(12.0)
        norm.mark_initialized()
        coupling.hypernet.layers[-1].bias.fill_(1.0)
    return MemorySavingStack([coupling, norm], on_drift=on_drift), norm


def _loss(stack: MemorySavingStack, x: Tensor) -> Tensor:
    z = stack.inv(x)
    return (z.pow(2).sum(-1) / 2 - stack.log_abs_det_jacobian(z, x)).sum()


def test_harmful_drift_raises_in_the_backward_pass() -> None:
    stack, _ = _tiny_actnorm_stack()
    x = torch.randn(8, 4)
    assert relative_drift(stack, x) > 1e-3
    loss = _loss(stack, x)  # the forward pass is exact: only the rebuild loses the input
    with pytest.raises(ReconstructionError, match=r"relative error of .* above drift_tolerance"):
        loss.backward()
    # in float64 the same stack rebuilds its input: no error, gradients as ordinary
    stack.double()
    _loss(stack, x.double()).backward()


def test_saturated_coupling_scales_raise() -> None:
    layers = []
    for k in range(8):
        t = masked_affine_coupling(4, half_mask(4, flip=k % 2 == 1), [8], scale_bound=4.0)
        with torch.no_grad():
            last = t.hypernet.layers[-1]
            last.bias[4:].fill_(50.0)  # the raw scale, far past the bound
            last.bias[:4].fill_(1.0)
            last.weight.normal_(0, 0.5)
        layers.append(t)
    x = torch.randn(8, 4)
    stack = MemorySavingStack(layers)
    assert relative_drift(stack, x) > 1e-3
    with pytest.raises(ReconstructionError, match="affine couplings whose scales sit at"):
        _loss(stack, x).backward()
    assert relative_drift(MemorySavingStack(layers[:2]), x) < 1e-6


def test_drift_can_warn_or_be_left_unchecked() -> None:
    stack, norm = _tiny_actnorm_stack("warn")
    with pytest.warns(ReconstructionWarning, match="memory_saving=False"):
        _loss(stack, torch.randn(8, 4)).backward()
    assert norm.log_scale.grad is not None
    stack, _ = _tiny_actnorm_stack("off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _loss(stack, torch.randn(8, 4)).backward()


def test_tolerance_is_the_stacks_choice() -> None:
    stack, _ = _tiny_actnorm_stack()
    stack._stack.drift_tolerance = 1.0
    _loss(stack, torch.randn(8, 4)).backward()


def test_flow_distribution_around_a_stack_samples_and_scores() -> None:
    flow = Flow([memory_saving([ActNorm(4), revnet_block(4, [8])] * 3)], event_shape=(4,))
    d = flow()
    x = d.rsample((5,))
    assert d.log_prob(x).shape == (5,)
    base = dist.Normal(torch.zeros(4), 1.0).to_event(1)
    assert torch.allclose(d.log_prob(x.clone()), d.log_prob(x), atol=1e-5)
    assert base.batch_shape == ()


def test_active_dropout_is_refused_and_eval_mode_or_no_dropout_runs() -> None:
    """The rebuilding backward pass re-runs each layer: a fresh dropout mask there would
    rebuild a wrong input and give wrong gradients, so the stack refuses it."""
    from pyro_dgm.nn import CouplingMLP
    from pyro_dgm.transforms import MaskedAffineCoupling

    def layer(p: float) -> MaskedAffineCoupling:
        net = CouplingMLP(4, [16], num_outputs=2, dropout=p)
        with torch.no_grad():
            net.layers[-1].weight.normal_(0.0, 0.1)
        return MaskedAffineCoupling(half_mask(4), net)

    x = torch.randn(8, 4)
    stack = memory_saving([layer(0.5), ActNorm(4)])
    with pytest.raises(ValueError, match=r"layer 0 .*drops out units in train\(\) mode"):
        stack.log_abs_det_jacobian(stack.inv(x), x).sum().backward()
    stack.eval()
    stack.inv(x).sum().backward()  # no dropout in eval(): the pass runs
    plain = memory_saving([layer(0.0)])
    plain.inv(x).sum().backward()


def test_a_learnable_tensor_outside_a_module_is_refused() -> None:
    """Its gradient would be dropped without a word: refused at construction."""
    from torch.distributions import AffineTransform

    shift = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"learnable tensors \(loc\) outside an nn.Module"):
        memory_saving([AffineTransform(shift, 2.0, event_dim=1)])
    memory_saving([AffineTransform(torch.zeros(3), 2.0, event_dim=1)])  # a constant is fine
