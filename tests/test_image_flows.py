"""Image layers (squeeze, 1x1 convolution, convolutional couplings) and the
multi-scale RealNVP / Glow flows."""

from __future__ import annotations

import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from harness import DistributionCase, DistributionHarness, TransformCase, TransformHarness
from pyro.distributions.transforms import GeneralizedChannelPermute

from pyro_dgm import infer
from pyro_dgm.flows import MultiScaleFlow
from pyro_dgm.flows import MultiScaleGlow as Glow
from pyro_dgm.flows import MultiScaleRealNVP as RealNVP
from pyro_dgm.models import FlowModel, UniformDequantization, VariationalDequantization
from pyro_dgm.nn.conv import ConvResNet, CouplingConvNet
from pyro_dgm.transforms import ActNorm, MultiScaleLevel, MultiScaleTransform
from pyro_dgm.transforms.image import (
    InvertibleConv1x1,
    Squeeze,
    conditional_conv_affine_coupling,
    conv_additive_coupling,
    conv_affine_coupling,
    image_mask,
)


def _glow(**kw) -> MultiScaleTransform:
    options = {"num_levels": 2, "num_steps": 2, "hidden_channels": 8} | kw
    return Glow((1, 4, 4), **options).transform


def _realnvp(**kw) -> MultiScaleTransform:
    options = {"num_levels": 2, "num_steps": 1, "hidden_channels": 8, "num_blocks": 1} | kw
    return RealNVP((1, 4, 4), **options).transform


class TestImageLayers(TransformHarness):
    CASES = [
        TransformCase("squeeze", Squeeze, (1, 4, 4)),
        TransformCase("squeeze_rgb_rectangular", Squeeze, (3, 2, 6)),
        TransformCase("conv1x1_lu", lambda: InvertibleConv1x1(4), (4, 3, 3)),
        TransformCase("conv1x1_qr", lambda: InvertibleConv1x1(3, "qr"), (3, 2, 3)),
        TransformCase("pyro_channel_permute", lambda: GeneralizedChannelPermute(3), (3, 2, 2)),
        TransformCase(
            "affine_checkerboard",
            lambda: conv_affine_coupling((2, 4, 4), "checkerboard", hidden_channels=8),
            (2, 4, 4),
        ),
        TransformCase(
            "affine_channel_flipped",
            lambda: conv_affine_coupling((4, 2, 2), "channel", flip=True, hidden_channels=8),
            (4, 2, 2),
        ),
        TransformCase(
            "additive_checkerboard",
            lambda: conv_additive_coupling((1, 4, 4), hidden_channels=8, num_blocks=0),
            (1, 4, 4),
        ),
        TransformCase(
            "conditional_affine_checkerboard",
            lambda: conditional_conv_affine_coupling((1, 4, 4), 2, hidden_channels=8),
            (1, 4, 4),
            context_dim=32,
        ),
        TransformCase(
            "conditional_affine_channel",
            lambda: conditional_conv_affine_coupling((2, 2, 2), 1, "channel", hidden_channels=8),
            (2, 2, 2),
            context_dim=4,
        ),
        TransformCase(
            "additive_channel",
            lambda: conv_additive_coupling((2, 3, 3), "channel", hidden_channels=8),
            (2, 3, 3),
        ),
    ]


class TestMultiScaleTransforms(TransformHarness):
    CASES = [
        TransformCase("glow", _glow, (1, 4, 4), data_init=True),
        TransformCase(
            "glow_qr_additive",
            lambda: _glow(parametrization="qr", coupling="additive"),
            (1, 4, 4),
            data_init=True,
        ),
        TransformCase(
            "glow_standard_prior", lambda: _glow(learned_prior=False), (1, 4, 4), data_init=True
        ),
        TransformCase(
            "glow_checkerboard_steps",
            lambda: _glow(checkerboard_steps=2),
            (1, 4, 4),
            data_init=True,
        ),
        TransformCase(
            "glow_rgb_one_level",
            lambda: Glow((3, 2, 2), 1, 2, 8).transform,
            (3, 2, 2),
            data_init=True,
        ),
        TransformCase("realnvp", _realnvp, (1, 4, 4), data_init=True),
        TransformCase(
            "realnvp_learned_prior",
            lambda: _realnvp(learned_prior=True),
            (1, 4, 4),
            data_init=True,
        ),
        TransformCase(
            "nice_no_actnorm", lambda: _realnvp(coupling="additive", actnorm=False), (1, 4, 4)
        ),
        TransformCase(
            "glow_memory_saving", lambda: _glow(memory_saving=True), (1, 4, 4), data_init=True
        ),
        TransformCase(
            "realnvp_memory_saving",
            lambda: _realnvp(memory_saving=True, learned_prior=True),
            (1, 4, 4),
            data_init=True,
        ),
    ]


def _two_dim_multiscale() -> MultiScaleFlow:
    """A multi-scale flow on a 2-pixel image (2, 1, 1): one coupling level that
    splits with a learned prior, then an ActNorm level; small enough for quadrature."""
    first = MultiScaleLevel(
        (2, 1, 1),
        [
            ActNorm(2, event_dim=3),
            InvertibleConv1x1(2),
            conv_affine_coupling((2, 1, 1), "channel", hidden_channels=8),
        ],
        squeeze=False,
        split=True,
        learned_prior=True,
    )
    last = MultiScaleLevel((1, 1, 1), [ActNorm(1, event_dim=3)], squeeze=False, split=False)
    return MultiScaleFlow(MultiScaleTransform([first, last]))


def _flow_case(name, make) -> DistributionCase:
    def factory(validate_args: bool | None = None) -> dist.TorchDistribution:
        torch.manual_seed(3)
        flow = make().double()
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))
        return flow()

    return DistributionCase(name, factory, invalid_values=None, mass_tolerance=3e-3)


class TestMultiScaleDistribution(DistributionHarness):
    CASES = [_flow_case("two_pixel_multiscale", _two_dim_multiscale)]


def test_squeeze_moves_each_2x2_block_into_four_channels() -> None:
    x = torch.randn(2, 3, 4, 6)
    y = Squeeze()(x)
    for c in range(3):
        for a in range(2):
            for b in range(2):
                assert torch.equal(y[:, 4 * c + 2 * a + b], x[:, c, a::2, b::2])
    assert Squeeze().inverse_shape(y.shape) == x.shape


def test_squeeze_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match=r"even H and W, got \(1, 3, 4\)"):
        Squeeze()(torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="C divisible by 4"):
        Squeeze().inv(torch.randn(3, 2, 2))


@pytest.mark.parametrize("parametrization", ["lu", "qr"])
def test_conv1x1_is_a_1x1_convolution_with_its_weight(parametrization: str) -> None:
    t = InvertibleConv1x1(5, parametrization)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    t = t.double()
    expected = F.conv2d(x, t.weight[:, :, None, None])
    assert torch.allclose(t(x), expected, atol=1e-12)
    log_det = t.log_abs_det_jacobian(x, t(x))
    assert torch.allclose(log_det, 12 * torch.linalg.slogdet(t.weight).logabsdet.expand(2))


def test_conv1x1_matches_pyro_channel_permute_with_the_same_matrix() -> None:
    ours = InvertibleConv1x1(3).double()
    pyros = GeneralizedChannelPermute(3).double()
    with torch.no_grad():  # put our W = P L U' into Pyro's dense LU storage
        lower, upper = ours._lu_factors()
        pyros.permutation.copy_(ours.permutation)
        pyros.LU.copy_(lower.tril(-1) + upper)
    x = torch.randn(4, 3, 2, 5, dtype=torch.float64)
    assert torch.allclose(ours(x), pyros(x), atol=1e-12)
    assert torch.allclose(ours._inverse(x), pyros._inverse(x), atol=1e-10)
    assert torch.allclose(
        ours.log_abs_det_jacobian(x, ours(x)), pyros.log_abs_det_jacobian(x, pyros(x))
    )


def test_coupling_networks_start_at_zero_and_see_the_mask() -> None:
    net = ConvResNet(3, 6, hidden_channels=4, num_blocks=2)
    assert net(torch.randn(2, 3, 5, 5)).abs().max() == 0
    mask = image_mask("checkerboard", (1, 4, 4))
    hyper = CouplingConvNet(mask, hidden_channels=4)
    assert hyper.resnet.in_channels == 2  # the image and the mask
    with pytest.raises(ValueError, match=r"batch \+ \(3, H, W\)"):
        net(torch.randn(2, 2, 5, 5))
    with pytest.raises(ValueError, match="'checkerboard' or 'channel'"):
        conv_affine_coupling((1, 4, 4), "stripes")


@pytest.mark.parametrize(
    ("preset", "shape", "levels", "factor"),
    [(Glow, (1, 6, 6), 2, 4), (Glow, (3, 8, 4), 3, 8), (RealNVP, (1, 5, 8), 2, 2)],
)
def test_shapes_the_levels_do_not_divide_are_rejected(preset, shape, levels, factor) -> None:
    with pytest.raises(ValueError) as error:
        preset(shape, num_levels=levels, num_steps=1, hidden_channels=4)
    message = str(error.value)
    assert str(shape) in message and f"num_levels={levels}" in message
    assert f"divisible by {factor}" in message


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="event_shape: expected a shape of 3"):
        Glow((8, 8))
    with pytest.raises(ValueError, match="coupling"):
        RealNVP((1, 4, 4), coupling="spline")
    flow = Glow((1, 4, 4), 1, 1, 4)
    with pytest.raises(ValueError, match=r"batch \+ \(1, 4, 4\)"):
        flow.encode(torch.randn(3, 1, 4, 5))
    with pytest.raises(ValueError, match="temperature"):
        flow(temperature=0.0)
    with pytest.raises(ValueError, match="one per level"):
        flow.decode([torch.randn(4, 2, 2), torch.randn(4, 2, 2)])


@pytest.mark.parametrize("preset", [Glow, RealNVP, functools.partial(Glow, checkerboard_steps=2)])
def test_untrained_flow_is_an_exact_rotation_of_the_standard_normal(preset) -> None:
    """At initialisation every coupling is the identity and every 1x1 convolution
    a rotation, so the density is exactly N(0, I): an independent closed form."""
    torch.manual_seed(0)
    flow = preset((1, 8, 8), num_levels=2, num_steps=2, hidden_channels=8).double()
    flow.sample(2)  # sampling first leaves every ActNorm at the identity
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    expected = dist.Normal(0.0, 1.0).log_prob(x).sum((-3, -2, -1))
    assert torch.allclose(flow().log_prob(x), expected, atol=1e-9)


def test_checkerboard_steps_come_before_the_first_squeeze_only() -> None:
    """``checkerboard_steps`` adds (ActNorm, checkerboard coupling) pairs at full
    resolution in the first level's pre-squeeze stage, alternating the mask, and
    nowhere else; 0 is the paper's Glow."""
    plain, extra = (Glow((1, 8, 8), 2, 2, 8, checkerboard_steps=k).transform for k in (0, 3))
    assert all(not level.pre_parts for level in plain.levels)
    first = extra.levels[0].pre_parts
    assert [type(part).__name__ for part in first[::2]] == ["ActNorm"] * 3
    masks = [part.mask for part in first[1::2]]
    assert all(mask.shape[-2:] == (8, 8) for mask in masks)  # full resolution, no squeeze
    assert torch.equal(masks[0], masks[2]) and torch.equal(masks[0], 1 - masks[1])
    assert not extra.levels[1].pre_parts
    assert [len(level.post_parts) for level in extra.levels] == [6, 6]  # the steps unchanged
    x = torch.randn(4, 1, 8, 8)
    assert extra.latent_shapes == plain.latent_shapes
    assert Glow((1, 8, 8), 2, 2, 8, checkerboard_steps=3)().log_prob(x).shape == (4,)
    with pytest.raises(ValueError, match="checkerboard_steps: expected an int >= 0, got -1"):
        Glow((1, 8, 8), 2, 2, 8, checkerboard_steps=-1)


def test_temperature_scales_samples_of_a_rotation() -> None:
    torch.manual_seed(0)
    flow = Glow((1, 8, 8), num_levels=2, num_steps=2, hidden_channels=8)
    for temperature in (0.3, 1.0):
        x = flow.sample(2000, temperature=temperature)
        assert x.std().item() == pytest.approx(temperature, rel=0.03)


def test_encode_decode_round_trip_and_interpolation() -> None:
    torch.manual_seed(0)
    flow = Glow((1, 8, 8), num_levels=3, num_steps=2, hidden_channels=8)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.rand(4, 1, 8, 8)
        latents = flow.encode(x)
        assert [tuple(z.shape[1:]) for z in latents] == [(2, 4, 4), (4, 2, 2), (16, 1, 1)]
        assert torch.allclose(flow.decode(latents), x, atol=1e-5)
        # the packed noise is the base sample: log_prob agrees with its parts
        eps = flow.transform.pack(latents)
        base = dist.Normal(0.0, 1.0).log_prob(eps).sum((-3, -2, -1))
        log_det = flow.transform.encode(x)[1]
        assert torch.allclose(flow().log_prob(x), base - log_det, atol=1e-4)
        # halfway between two images in latent space decodes to an image
        mid = flow.decode([(a[0] + a[1]) / 2 for a in latents])
        assert mid.shape == (1, 8, 8) and torch.isfinite(mid).all()


def test_log_prob_of_an_image_does_not_depend_on_its_batch() -> None:
    torch.manual_seed(0)
    flow = RealNVP((1, 8, 8), num_levels=2, num_steps=2, hidden_channels=8)
    x = torch.rand(16, 1, 8, 8)
    flow().log_prob(x)  # initialises the ActNorms
    with torch.no_grad():
        assert torch.allclose(flow().log_prob(x)[3:5], flow().log_prob(x[3:5]), atol=1e-5)


def test_deep_glow_round_trips_in_float32() -> None:
    torch.manual_seed(0)
    flow = Glow((1, 8, 8), num_levels=2, num_steps=8, hidden_channels=16)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.rand(8, 1, 8, 8)
        eps = flow.transform._inverse(x)
        assert (flow.transform._call(eps) - x).abs().max() < 1e-4


def test_vectorized_batch_dimensions_and_expand() -> None:
    flow = Glow((1, 4, 4), 2, 1, 4)
    d = flow().expand((3, 2))
    x = d.sample((5,))
    assert x.shape == (5, 3, 2, 1, 4, 4)
    assert d.log_prob(x).shape == (5, 3, 2)
    masked = flow().mask(torch.tensor([True, False])).to_event(0)
    assert masked.log_prob(torch.randn(2, 1, 4, 4))[1] == 0


def _digits_like(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    blob = torch.zeros(1, 8, 8)
    blob[:, 2:6, 3:5] = 12.0
    noise = torch.randint(0, 5, (n, 1, 8, 8), generator=g)
    return (blob + noise).clamp(max=16).to(torch.uint8)


@pytest.mark.parametrize("preset", [Glow, RealNVP])
@pytest.mark.parametrize("pair_class", [UniformDequantization, VariationalDequantization])
def test_image_flows_train_inside_the_dequantization_pairs(preset, pair_class) -> None:
    """Both presets, both dequantizations, through fit: the ELBO improves and the
    importance-weighted bound (bits/dim of the discrete data) is finite."""
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    y = _digits_like(96)
    flow = preset((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8, num_blocks=1)
    pair = pair_class(flow, 17, event_shape=(1, 8, 8))
    history = infer.fit(
        pair.model,
        pair.guide,
        y,
        validation=None,
        epochs=4,
        batch_size=32,
        lr=3e-3,
        progress=False,
    )
    assert history.train_loss[-1] < history.train_loss[0]
    result = infer.importance_log_likelihood(pair.model, pair.guide, y[:8], num_samples=4)
    assert result.bound == "IWAE(K=4)"
    bpd = result.summary().bits_per_dim
    assert math.isfinite(bpd) and 0 < bpd < math.log2(17) + 1
    samples = pair.sample(20, outside="nearest")
    assert samples.shape == (20, 1, 8, 8) and samples.dtype == torch.long
    assert samples.min() >= 0 and samples.max() <= 16


def test_dequantized_sampling_names_what_to_do_outside_the_levels() -> None:
    """With the logit margin, a density puts mass just outside [0, L): rejection keeps
    only draws with every pixel inside; "nearest" moves the pixels outside."""
    torch.manual_seed(0)
    flow = Glow((1, 4, 4), 1, 1, 4)
    with torch.no_grad():  # a density centred far below level 0: nearly every draw is outside
        flow.transform.levels[0].post_parts[0].loc.fill_(-4.0)
        flow.transform.levels[0].post_parts[0].initialized.fill_(True)
    pair = UniformDequantization(flow, 5, event_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="outside='nearest'"):
        pair.sample(10, max_rounds=2)
    assert torch.equal(pair.sample(10, outside="nearest"), torch.zeros(10, 1, 4, 4).long())
    with pytest.raises(ValueError, match="'reject' or 'nearest'"):
        pair.sample(10, outside="clip")


def test_flow_model_elbo_is_the_exact_negative_log_likelihood() -> None:
    flow = RealNVP((1, 4, 4), 2, 1, 8).double()
    pair = FlowModel(flow)
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    loss = pyro.infer.Trace_ELBO().loss(pair.model, pair.guide, x)
    assert loss == pytest.approx(-flow().log_prob(x).sum().item(), rel=1e-10)


@pytest.mark.parametrize("flow_class", [RealNVP, Glow])
def test_dropout_in_the_coupling_networks_is_off_where_the_density_is_evaluated(
    flow_class,
) -> None:
    torch.manual_seed(0)
    flow = flow_class((1, 8, 8), num_levels=2, num_steps=1, hidden_channels=8, dropout=0.5)
    blocks = [m for m in flow.modules() if hasattr(m, "dropout") and isinstance(m.dropout, float)]
    assert blocks and all(m.dropout == 0.5 for m in blocks)
    with torch.no_grad():  # let the zero-initialised last layers produce something
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, 1, 8, 8)
    flow.train()
    assert not torch.equal(flow().log_prob(x), flow().log_prob(x))  # masks are drawn
    flow.eval()
    assert torch.equal(flow().log_prob(x), flow().log_prob(x))
    # in eval() mode the flow is exactly invertible
    z = flow.transform(x)
    assert torch.allclose(flow.transform.inv(z), x, atol=1e-4)
    with pytest.raises(ValueError, match="dropout: expected 0 with memory_saving=True"):
        flow_class((1, 8, 8), num_levels=2, num_steps=1, dropout=0.1, memory_saving=True)
    with pytest.raises(ValueError, match="dropout"):
        flow_class((1, 8, 8), num_levels=2, num_steps=1, dropout=1.5)
