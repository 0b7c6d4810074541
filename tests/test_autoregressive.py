"""PixelCNN and WaveNet distributions, their model/guide pair, and the sequence data sets."""

from __future__ import annotations

import io
import itertools
import math
from typing import ClassVar

import pyro
import pyro.distributions as dist
import pytest
import torch
from harness import DistributionCase, DistributionHarness
from pyro.infer import Predictive, Trace_ELBO
from test_masked_conv import _assert_causal, _dependencies
from torch import Tensor

from pyro_dgm import infer
from pyro_dgm.datasets import digits
from pyro_dgm.datasets.sequences import digit_sequences, waveforms
from pyro_dgm.distributions.autoregressive import AutoregressiveDistribution, PixelCNN, WaveNet
from pyro_dgm.models.autoregressive import AutoregressiveModel, build_autoregressive

# ---------------------------------------------------------------------------
# tiny models
# ---------------------------------------------------------------------------


def _pixelcnn(shape=(1, 2, 2), levels=3, output="logistic_mixture", context_dim=None, **kw):
    torch.manual_seed(1)
    kw = {"hidden_channels": 3 * shape[0], "num_layers": 2, "num_components": 2} | kw
    module = PixelCNN(shape, levels, output=output, context_dim=context_dim, **kw).double()
    with torch.no_grad():  # away from the initialisation, so every term matters
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def _wavenet(shape=(1, 4), levels=3, output="logistic_mixture", context_dim=None, **kw):
    torch.manual_seed(2)
    kw = {"residual_channels": 3 * shape[0], "num_layers": 2, "num_components": 2} | kw
    module = WaveNet(shape, levels, output=output, context_dim=context_dim, **kw).double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def _case(name: str, build, context_batch: tuple[int, ...] | None = None) -> DistributionCase:
    module = build()
    context = None
    if context_batch is not None:
        context = torch.randn(*context_batch, module.context_dim, dtype=torch.float64)
    shape = module.event_shape
    levels = module.num_levels

    def factory(validate_args: bool | None = None) -> AutoregressiveDistribution:
        return AutoregressiveDistribution(module, context, validate_args=validate_args)

    good = torch.zeros(shape, dtype=torch.float64)
    invalid = [good + 0.5, good - 1, good + levels, torch.zeros(*shape[:-1], shape[-1] + 1)]
    return DistributionCase(name, factory, invalid_values=invalid, mass_tolerance=1e-9)


class TestAutoregressiveHarness(DistributionHarness):
    CASES: ClassVar[list[DistributionCase]] = [
        _case("pixelcnn_mixture_1x2x2", lambda: _pixelcnn()),
        _case("pixelcnn_categorical_3x1x2", lambda: _pixelcnn((3, 1, 2), output="categorical")),
        _case("pixelcnn_mixture_2x2x1_ctx", lambda: _pixelcnn((2, 2, 1), context_dim=2), (2,)),
        _case("wavenet_mixture_1x4", lambda: _wavenet()),
        _case("wavenet_categorical_2x3", lambda: _wavenet((2, 3), output="categorical")),
        _case("wavenet_mixture_1x4_ctx", lambda: _wavenet(context_dim=3), (2,)),
    ]


# ---------------------------------------------------------------------------
# causality of the distributions' parameters (the networks' own tests are in
# test_masked_conv.py: every mask type, several depths)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("output", ["logistic_mixture", "categorical"])
@pytest.mark.parametrize("depth", [1, 3])
def test_parameters_never_see_the_present_or_future(c: int, output: str, depth: int) -> None:
    width = 8 * c  # wide enough that some ReLU of the output head is alive everywhere
    images = _pixelcnn((c, 4, 5), 6, output, num_layers=depth, hidden_channels=width)
    sequences = _wavenet((c, 10), 6, output, num_layers=depth, residual_channels=width)
    for module in (images, sequences):
        shape = tuple(module.event_shape)

        def params(y: Tensor, module=module) -> Tensor:
            return module.network(module._scale_input(y))

        _assert_causal(_dependencies(params, shape, module.num_params), shape)


@pytest.mark.parametrize("c", [1, 3])
def test_dropout_keeps_the_networks_causal_while_training(c: int) -> None:
    """Dropout draws a mask per feature and position: in train() mode, with features
    dropped, a position's parameters still see only its past."""
    width = 8 * c
    images = _pixelcnn((c, 4, 5), 6, "categorical", hidden_channels=width, dropout=0.5)
    sequences = _wavenet((c, 10), 6, "categorical", residual_channels=width, dropout=0.5)
    for module in (images, sequences):
        module.train()
        shape = tuple(module.event_shape)

        def params(y: Tensor, module=module) -> Tensor:
            return module.network(module._scale_input(y))

        _assert_causal(_dependencies(params, shape, module.num_params), shape)


@pytest.mark.parametrize(
    "build",
    [
        lambda p: _pixelcnn((2, 3, 3), levels=5, dropout=p),
        lambda p: _wavenet((1, 8), levels=5, output="categorical", dropout=p),
    ],
    ids=["pixelcnn", "wavenet"],
)
def test_dropout_is_random_in_training_and_off_in_eval_and_generation(build) -> None:
    module = build(0.5)
    y = torch.randint(0, module.num_levels, (4, *module.event_shape))
    module.train()
    assert not torch.equal(module().log_prob(y), module().log_prob(y))  # new masks
    module.eval()
    evaluated = module().log_prob(y)
    assert torch.equal(evaluated, module().log_prob(y))
    plain = build(0.0)
    plain.load_state_dict(module.state_dict())  # dropout has no parameters
    torch.testing.assert_close(evaluated, plain.eval()().log_prob(y), rtol=0, atol=0)
    # generation runs the network as evaluated, in either mode, and leaves the mode as it was
    module.train()
    torch.manual_seed(5)
    naive = module().sample((3,), method="naive")
    torch.manual_seed(5)
    cached = module().sample((3,), method="cached")
    torch.manual_seed(5)
    expected = plain().sample((3,), method="cached")
    assert torch.equal(naive, cached) and torch.equal(cached, expected)
    assert module.network.training


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5", True])
def test_dropout_of_the_autoregressive_networks_out_of_range_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="dropout: expected"):
        PixelCNN((1, 4, 4), 5, dropout=bad)
    with pytest.raises(ValueError, match="dropout: expected"):
        WaveNet(16, 5, dropout=bad)


# ---------------------------------------------------------------------------
# log_prob against an independent brute-force chain rule
# ---------------------------------------------------------------------------


def _logistic_pmf(y: int, loc: float, scale: float, levels: int) -> float:
    def cdf(x: float) -> float:
        return 1 / (1 + math.exp(-(x - loc) / scale))

    upper = 1.0 if y == levels - 1 else cdf(y + 0.5)
    lower = 0.0 if y == 0 else cdf(y - 0.5)
    return upper - lower


def _brute_force_log_prob(module, y: Tensor, context: Tensor | None) -> float:
    """Chain rule, one position at a time: the network sees the prefix only (the
    future is filled with random junk), and each pmf is evaluated from its formula."""
    shape = module.event_shape
    c = shape[0]
    levels = module.num_levels
    positions = list(itertools.product(*[range(s) for s in shape[1:]]))
    total = 0.0
    gen = torch.Generator().manual_seed(3)
    for rank, (place, k) in enumerate(itertools.product(positions, range(c))):
        junk = torch.randint(0, levels, shape, generator=gen).double()
        for earlier, (place2, k2) in enumerate(itertools.product(positions, range(c))):
            if earlier < rank:
                junk[(k2, *place2)] = y[(k2, *place2)]
        ctx = None if context is None else context[None]
        params = module.network(module._scale_input(junk[None]), ctx)[0][(slice(None), k, *place)]
        params = params.detach()
        value = int(y[(k, *place)])
        if module.output == "categorical":
            total += float(params.log_softmax(-1)[value])
            continue
        kk = module.num_components
        weights = params[:kk].softmax(-1)
        half = (levels - 1) / 2
        locs = half * (1 + params[kk : 2 * kk])
        scales = half * torch.nn.functional.softplus(params[2 * kk :] - 2) + module.min_scale
        mass = sum(
            float(w) * _logistic_pmf(value, float(m), float(s), levels)
            for w, m, s in zip(weights, locs, scales, strict=True)
        )
        total += math.log(mass)
    return total


@pytest.mark.parametrize(
    ("build", "context_dim"),
    [
        (lambda: _pixelcnn((2, 2, 3), levels=5), None),
        (lambda: _pixelcnn((1, 3, 3), levels=4, output="categorical"), None),
        (lambda: _pixelcnn((3, 2, 2), levels=4, context_dim=2), 2),
        (lambda: _wavenet((1, 6), levels=5), None),
        (lambda: _wavenet((2, 4), levels=4, output="categorical", context_dim=2), 2),
    ],
)
def test_log_prob_matches_brute_force_chain_rule(build, context_dim: int | None) -> None:
    module = build()
    y = torch.randint(0, module.num_levels, (3, *module.event_shape))
    context = None if context_dim is None else torch.randn(3, context_dim, dtype=torch.float64)
    log_p = module(context).log_prob(y).detach()
    for b in range(3):
        ctx = None if context is None else context[b]
        expected = _brute_force_log_prob(module, y[b].double(), ctx)
        assert math.isclose(float(log_p[b]), expected, rel_tol=1e-9, abs_tol=1e-9)


# ---------------------------------------------------------------------------
# sampling: cached == naive, shapes, support
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: _pixelcnn((1, 5, 6), levels=9),
        lambda: _pixelcnn((3, 3, 4), levels=9, output="categorical"),
        lambda: _pixelcnn((2, 3, 3), levels=9, context_dim=3),
        lambda: _wavenet((1, 30), levels=9, num_layers=4),
        lambda: _wavenet((2, 12), levels=9, output="categorical", kernel_size=3),
        lambda: _wavenet((1, 12), levels=9, context_dim=3),
    ],
)
def test_cached_and_naive_samples_agree(build) -> None:
    module = build()
    context = None
    if module.context_dim is not None:
        context = torch.randn(2, module.context_dim, dtype=torch.float64)
    d = module(context)
    torch.manual_seed(7)
    naive = d.sample((3,), method="naive")
    torch.manual_seed(7)
    cached = d.sample((3,), method="cached")
    assert naive.shape == (3, *d.batch_shape, *d.event_shape)
    assert torch.equal(naive, cached)
    assert len(naive.unique()) > 2  # not degenerate
    torch.manual_seed(8)
    assert not torch.equal(d.sample((3,)), cached)  # a new seed, new samples


def test_samples_follow_the_model() -> None:
    """Frequencies of the 3^2 images of a 1x1x2 model match its pmf (chi-square-ish)."""
    module = _pixelcnn((1, 1, 2), levels=3)
    d = module()
    grid = torch.cartesian_prod(torch.arange(3.0), torch.arange(3.0)).reshape(9, 1, 1, 2)
    p = d.log_prob(grid.double()).exp().detach()
    torch.manual_seed(0)
    samples = d.sample((20000,))
    codes = (samples[:, 0, 0, 0] * 3 + samples[:, 0, 0, 1]).long()
    freq = torch.bincount(codes, minlength=9).double() / 20000
    assert torch.allclose(freq, p, atol=4 * (p * (1 - p) / 20000).sqrt().max() + 1e-3)


def test_float32_cached_and_naive_agree_on_digit_sized_images() -> None:
    module = PixelCNN((1, 8, 8), 17, hidden_channels=8, num_layers=2)
    d = module()
    torch.manual_seed(3)
    naive = d.sample((2,), method="naive")
    torch.manual_seed(3)
    assert torch.equal(naive, d.sample((2,), method="cached"))
    assert naive.dtype == torch.float32


def test_shapes_batching_and_broadcasting() -> None:
    module = _pixelcnn((1, 2, 3), levels=4, context_dim=2)
    context = torch.randn(5, 2, dtype=torch.float64)
    d = module(context)
    assert d.batch_shape == (5,) and d.event_shape == (1, 2, 3)
    assert d.support.event_dim == 3 and d.support.is_discrete
    y = d.sample((2,))
    assert y.shape == (2, 5, 1, 2, 3)
    assert d.log_prob(y).shape == (2, 5)
    # one value scored under every context, and a plate-expanded batch
    assert d.log_prob(y[0, 0]).shape == (5,)
    e = d.expand((4, 5))
    assert e.log_prob(y[0]).shape == (4, 5)
    assert torch.allclose(e.log_prob(y[0])[2], d.log_prob(y[0]))
    # row b of a batched log_prob is the log_prob under context b alone
    single = module(context[1]).log_prob(y[0, 1])
    assert torch.allclose(d.log_prob(y[0])[1], single)
    # to_event / mask / independent work as for any Pyro distribution
    assert d.to_event(1).log_prob(y[0]).shape == ()
    assert d.mask(False).log_prob(y[0]).abs().sum() == 0
    with pytest.raises(ValueError, match="batch_shape"):
        d.expand((3,))


def test_unconditional_batch_shape_and_expand() -> None:
    module = _wavenet((1, 5), levels=4)
    d = module()
    assert d.batch_shape == () and d.event_shape == (1, 5)
    y = d.sample((3, 2))
    assert y.shape == (3, 2, 1, 5)
    assert d.log_prob(y).shape == (3, 2)
    assert d.expand((7,)).sample().shape == (7, 1, 5)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (torch.zeros(2, 1, 3, 3), "shape"),
        (torch.full((2, 1, 3, 4), 0.5), "integers"),
        (torch.full((2, 1, 3, 4), -1.0), "integers"),
        (torch.full((2, 1, 3, 4), 5.0), r"\{0, \.\.\., 4\}"),
        (torch.zeros(3, 1, 3, 4), "broadcast"),
    ],
)
def test_bad_values_raise(value: Tensor, match: str) -> None:
    module = PixelCNN((1, 3, 4), 5, hidden_channels=4, num_layers=1, context_dim=2)
    d = module.condition(torch.zeros(2, 2))  # Pyro's ConditionalDistribution idiom
    with pytest.raises(ValueError, match=match):
        d.log_prob(value)


def test_wrong_shape_raises_even_without_validation() -> None:
    d = AutoregressiveDistribution(
        WaveNet(8, 5, residual_channels=4, num_layers=2), validate_args=False
    )
    with pytest.raises(ValueError, match="shape"):
        d.log_prob(torch.zeros(2, 1, 7))
    assert d.log_prob(torch.zeros(2, 1, 8, dtype=torch.uint8)).shape == (2,)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: PixelCNN((8, 8), 17), "event_shape"),
        (lambda: PixelCNN((1, 8, 8), 1), "num_levels"),
        (lambda: PixelCNN((1, 8, 8), 17, output="gaussian"), "output"),
        (lambda: PixelCNN((3, 8, 8), 17, hidden_channels=32), "hidden_channels"),
        (lambda: WaveNet((1, 2, 8), 17), "event_shape"),
        (lambda: WaveNet(16, 17, num_layers=0), "num_layers"),
        (lambda: PixelCNN((1, 4, 4), 5)(torch.zeros(2, 3)), "context"),
        (lambda: PixelCNN((1, 4, 4), 5, context_dim=3)(), "context"),
        (lambda: PixelCNN((1, 4, 4), 5, context_dim=3)(torch.zeros(2, 2)), "context"),
        (lambda: PixelCNN((1, 4, 4), 5, context_dim=3)(torch.zeros(2, 3).long()), "context"),
        (lambda: PixelCNN((1, 2, 2), 5)().sample(method="fast"), "method"),
    ],
)
def test_bad_arguments_raise(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_receptive_field_and_repr() -> None:
    wavenet = WaveNet(1024, 256)
    assert wavenet.receptive_field == 1024
    assert WaveNet(64, 17, num_layers=6).receptive_field == 64
    assert PixelCNN((1, 8, 8), 17, num_layers=5).receptive_field == (7, 6)
    assert "PixelCNN" in repr(PixelCNN((1, 2, 2), 3)())


def test_state_dict_round_trip_and_double() -> None:
    module = _pixelcnn((1, 3, 3), levels=5)
    y = torch.randint(0, 5, (4, 1, 3, 3))
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh = PixelCNN((1, 3, 3), 5, hidden_channels=3, num_layers=2, num_components=2).double()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh().log_prob(y), module().log_prob(y))
    single = module.float()
    assert single().log_prob(y).dtype == torch.float32
    assert all(b.dtype == torch.float32 for b in single.buffers())


# ---------------------------------------------------------------------------
# Pyro integration and training
# ---------------------------------------------------------------------------


def test_predictive_and_plates() -> None:
    module = PixelCNN((1, 3, 3), 5, hidden_channels=4, num_layers=1)

    def model(n: int) -> None:
        pyro.module("pixelcnn", module)
        with pyro.plate("data", n):
            pyro.sample("x", module())

    samples = Predictive(model, num_samples=2)(4)["x"]
    assert samples.shape == (2, 4, 1, 3, 3)
    assert ((samples >= 0) & (samples <= 4) & (samples == samples.round())).all()


def test_as_vae_decoder_with_vectorized_particles() -> None:
    """Conditioned on a latent, it is a likelihood p(x | z) inside a data plate."""
    decoder = PixelCNN((1, 4, 4), 5, hidden_channels=4, num_layers=1, context_dim=2)
    encoder = torch.nn.Linear(16, 4)
    y = torch.randint(0, 5, (6, 1, 4, 4))

    def model(x: Tensor) -> None:
        pyro.module("decoder", decoder)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", decoder(z), obs=x)

    def guide(x: Tensor) -> None:
        pyro.module("encoder", encoder)
        loc, log_scale = encoder(x.reshape(len(x), -1).float()).chunk(2, -1)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    loss = Trace_ELBO(num_particles=3, vectorize_particles=True).differentiable_loss(
        model, guide, y
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())
    iw = infer.importance_log_likelihood(model, guide, y, num_samples=4)
    assert iw.values.shape == (6,) and iw.bound.startswith("IWAE")


def test_fit_pixelcnn_on_digits_decreases_the_loss_and_is_exact() -> None:
    data = digits()
    pair = AutoregressiveModel(PixelCNN((1, 8, 8), 17, hidden_channels=8, num_layers=2))
    subset = data.train[:256]
    before = infer.evaluate_loss(pair.model, pair.guide, data.validation)
    history = infer.fit(
        pair.model,
        pair.guide,
        subset,
        validation=data.validation,
        epochs=4,
        batch_size=64,
        lr=3e-3,
        progress=False,
    )
    after = infer.evaluate_loss(pair.model, pair.guide, data.validation)
    assert after < before - 10  # nats per image
    assert history.validation_loss[-1] < history.validation_loss[0]
    ll = infer.log_likelihood(pair.model, pair.guide, data.test[:50])
    assert ll.bound == "exact"
    direct = pair.module().log_prob(data.test[:50]).mean().detach()
    assert math.isclose(ll.nats, float(direct), rel_tol=1e-5)
    assert ll.bits_per_dim < math.log2(17)  # better than uniform coding after a short fit
    assert pair.sample(2).shape == (2, 1, 8, 8)


def test_fit_wavenet_on_digit_sequences() -> None:
    data = digit_sequences()
    pair = build_autoregressive("wavenet", data, hidden=8, num_layers=3)
    before = infer.evaluate_loss(pair.model, pair.guide, data.validation)
    infer.fit(
        pair.model,
        pair.guide,
        data.train[:256],
        validation=data.validation,
        epochs=3,
        batch_size=64,
        lr=3e-3,
        progress=False,
    )
    assert infer.evaluate_loss(pair.model, pair.guide, data.validation) < before - 10


def test_build_autoregressive() -> None:
    pair = build_autoregressive("pixelcnn", digits(), hidden=8, num_layers=2)
    assert isinstance(pair.module, PixelCNN) and pair.module.event_shape == (1, 8, 8)
    pair = build_autoregressive("wavenet", waveforms(num_sequences=10, length=32), 6, 5)
    assert isinstance(pair.module, WaveNet) and pair.module.receptive_field == 32
    with pytest.raises(ValueError, match="sequences"):
        build_autoregressive("wavenet", digits(), 8, 2)
    with pytest.raises(ValueError, match="images"):
        build_autoregressive("pixelcnn", digit_sequences(), 8, 2)
    with pytest.raises(ValueError, match="name"):
        build_autoregressive("pixelrnn", digits(), 8, 2)
    with pytest.raises(ValueError, match="x"):
        pair.model(torch.zeros(2, 1, 31, dtype=torch.uint8))


# ---------------------------------------------------------------------------
# sequence data sets
# ---------------------------------------------------------------------------


def test_digit_sequences_are_digits_in_raster_order() -> None:
    seq, img = digit_sequences(seed=1), digits(seed=1)
    for split in ("train", "validation", "test"):
        x, y = getattr(seq, split), getattr(img, split)
        assert x.shape == (len(y), 1, 64) and x.dtype == torch.uint8
        assert torch.equal(x[:, 0, 8 * 3 + 5], y[:, 0, 3, 5])
    assert torch.equal(seq.test_labels, img.test_labels) and seq.num_levels == 17


def test_waveforms_are_seeded_quantized_and_split() -> None:
    a = waveforms(num_sequences=30, length=200, num_levels=16, seed=4)
    b = waveforms(num_sequences=30, length=200, num_levels=16, seed=4)
    c = waveforms(num_sequences=30, length=200, num_levels=16, seed=5)
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert (len(a.train), len(a.validation), len(a.test)) == (21, 3, 6)
    assert a.train.shape[1:] == (1, 200) and a.train.dtype == torch.uint8
    assert int(a.train.max()) <= 15 and a.num_levels == 16
    # smooth signal plus small noise: neighbours are close, far apart they are not
    x = a.train.double()[:, 0]
    assert (x[:, 1:] - x[:, :-1]).abs().mean() < 0.5 * (x[:, 100:] - x[:, :-100]).abs().mean()
    for kwargs in ({"num_sequences": 5}, {"num_levels": 300}, {"length": 0}, {"seed": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            waveforms(**kwargs)


def test_moments_raise_with_a_reason() -> None:
    d = PixelCNN((1, 2, 2), 5, hidden_channels=4, num_layers=1)()
    for name in ("mean", "variance"):
        with pytest.raises(NotImplementedError, match=f"{name} has no closed form"):
            getattr(d, name)
    with pytest.raises(NotImplementedError, match="entropy"):
        d.entropy()
    with pytest.raises(ValueError, match="module"):
        AutoregressiveModel(torch.nn.Linear(2, 2))
