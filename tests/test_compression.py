"""Lossless compression with the models: exact coding, bits-back coding, the container."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from torch import Tensor

from pyro_dgm import compression, infer
from pyro_dgm.compression import quantize_log_probs, read_header
from pyro_dgm.datasets import digits
from pyro_dgm.distributions import (
    Discretized,
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    PixelCNN,
    WaveNet,
)
from pyro_dgm.models import (
    VAE,
    AutoregressiveModel,
    UniformDequantization,
)
from pyro_dgm.models.vae import StandardNormalPrior

pytest.importorskip("constriction")

FLUSH_BITS = 64  # the range coder's final words: the payload exceeds the ideal by at most this


def _perturbed(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Random weights away from the initialisation, so that the conditionals differ."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _pixelcnn(shape, levels, output="logistic_mixture", context_dim=None, seed=0) -> PixelCNN:
    torch.manual_seed(seed)
    module = PixelCNN(
        shape,
        levels,
        hidden_channels=2 * shape[0],
        num_layers=2,
        output=output,
        num_components=2,
        context_dim=context_dim,
    )
    return _perturbed(module, seed)


def _wavenet(shape, levels, output="logistic_mixture", context_dim=None, seed=0) -> WaveNet:
    torch.manual_seed(seed)
    module = WaveNet(
        shape,
        levels,
        residual_channels=2 * (shape[0] if isinstance(shape, tuple) else 1),
        num_layers=3,
        output=output,
        num_components=2,
        context_dim=context_dim,
    )
    return _perturbed(module, seed)


# ---------------------------------------------------------------------------
# the hooks of the autoregressive modules
# ---------------------------------------------------------------------------

MODULES = {
    "pixelcnn_mixture_2x3x4": lambda: _pixelcnn((2, 3, 4), 17),
    "pixelcnn_categorical_1x3x3": lambda: _pixelcnn((1, 3, 3), 5, "categorical"),
    "wavenet_mixture_2x5": lambda: _wavenet((2, 5), 9),
    "wavenet_categorical_1x6": lambda: _wavenet((1, 6), 3, "categorical"),
}


@pytest.mark.parametrize("build", MODULES.values(), ids=MODULES.keys())
@pytest.mark.parametrize("method", ["cached", "naive"])
def test_generate_with_a_drawing_choose_is_sampling(build, method: str) -> None:
    module = build()
    torch.manual_seed(3)
    sampled = module().sample((4,), method=method)
    positions = []

    def draw(params: Tensor, position: tuple[int, ...]) -> Tensor:
        positions.append(position)
        log_p = module.level_log_probs(params)
        return torch.distributions.Categorical(logits=log_p).sample()

    torch.manual_seed(3)
    module.generate(4, None, draw, method)
    order = sorted(positions, key=lambda p: (*p[1:], p[0]))  # raster order, channels inside
    assert positions == order and len(set(positions)) == math.prod(module.event_shape)
    # and the chosen values are what the loop conditions on: a drawing choose that uses
    # the module's own draw reproduces sample() bit for bit
    torch.manual_seed(3)
    again = module.generate(4, None, lambda p, _: module._draw(p), method)
    assert torch.equal(again, sampled)


@pytest.mark.parametrize("build", MODULES.values(), ids=MODULES.keys())
def test_level_log_probs_are_the_conditionals(build) -> None:
    module = build().double()
    y = module().sample((5,))
    total = torch.zeros(5, dtype=torch.float64)

    def teacher(params: Tensor, position: tuple[int, ...]) -> Tensor:
        log_p = module.level_log_probs(params)
        assert log_p.shape == (5, module.num_levels)
        torch.testing.assert_close(log_p.logsumexp(-1), torch.zeros(5, dtype=torch.float64))
        value = y[(slice(None), *position)]
        total.add_(log_p.gather(1, value.long()[:, None]).squeeze(1))
        return value

    assert torch.equal(module.generate(5, None, teacher), y)
    torch.testing.assert_close(total, module().log_prob(y))


def test_generate_refuses_a_bad_choose_and_bad_arguments() -> None:
    module = _pixelcnn((1, 2, 2), 4)
    with pytest.raises(ValueError, match=r"choose: expected 3 values \(shape \(3,\)\)"):
        module.generate(3, None, lambda p, _: torch.zeros(2))
    with pytest.raises(ValueError, match="choose: returned values outside the levels"):
        module.generate(3, None, lambda p, _: torch.full((3,), 7))
    with pytest.raises(ValueError, match="n: expected an int >= 1"):
        module.generate(0, None, lambda p, _: torch.zeros(0))
    with pytest.raises(ValueError, match="method: expected one of"):
        module.generate(1, None, lambda p, _: torch.zeros(1), "fast")
    with pytest.raises(ValueError, match=r"params: expected shape \(\.\.\., 6\)"):
        module.level_log_probs(torch.zeros(3, 5))
    conditional = _pixelcnn((1, 2, 2), 4, context_dim=2)
    with pytest.raises(ValueError, match=r"context: expected shape \(3, 2\)"):
        conditional.generate(3, torch.zeros(2, 2), lambda p, _: torch.zeros(3))


# ---------------------------------------------------------------------------
# quantization
# ---------------------------------------------------------------------------


def test_quantized_counts_cover_every_level_and_sum_to_the_precision() -> None:
    torch.manual_seed(0)
    log_p = torch.randn(50, 17, dtype=torch.float64) * 8
    log_p[0] = -math.inf
    log_p[0, 3] = 0.0  # one certain level: the others still get a count
    counts = quantize_log_probs(log_p)
    assert counts.dtype == torch.int64
    assert bool((counts >= 1).all()) and bool((counts.sum(-1) == 2**24).all())
    assert counts[0, 3] == 2**24 - 16
    assert torch.equal(counts, quantize_log_probs(log_p.clone()))  # deterministic
    assert torch.equal(counts, quantize_log_probs(log_p + 5.0))  # normalization is free
    # a value costs -log2(c / 2^24) bits, within a tiny margin of -log2 p where p is not tiny
    p = log_p.softmax(-1)
    big = p > 1e-3
    bits = 24 - torch.log2(counts.double())
    assert float((bits - (-torch.log2(p)))[big].abs().max()) < 1e-3
    with pytest.raises(ValueError, match="NaN"):
        quantize_log_probs(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="all -inf"):
        quantize_log_probs(torch.full((1, 3), -math.inf))
    with pytest.raises(ValueError, match=r"log_probs: expected shape \(n, L\)"):
        quantize_log_probs(torch.zeros(3))


# ---------------------------------------------------------------------------
# exact models: round trips and rates
# ---------------------------------------------------------------------------

EXACT = {
    "pixelcnn_mixture_1x8x8_L17": (lambda: _pixelcnn((1, 8, 8), 17), 12),
    "pixelcnn_categorical_3x5x3_L256": (lambda: _pixelcnn((3, 5, 3), 256, "categorical"), 6),
    "pixelcnn_mixture_2x3x4_L2": (lambda: _pixelcnn((2, 3, 4), 2), 10),
    "pixelcnn_mixture_1x4x5_L256": (lambda: _pixelcnn((1, 4, 5), 256), 7),
    "wavenet_mixture_1x64_L17": (lambda: _wavenet(64, 17), 8),
    "wavenet_categorical_3x7_L2": (lambda: _wavenet((3, 7), 2, "categorical"), 9),
    "wavenet_mixture_1x9_L256": (lambda: _wavenet((1, 9), 256), 6),
    "pair_pixelcnn_1x3x3": (lambda: AutoregressiveModel(_pixelcnn((1, 3, 3), 5)), 11),
}


@pytest.mark.parametrize(("build", "n"), EXACT.values(), ids=EXACT.keys())
def test_exact_models_round_trip_at_their_likelihood(build, n: int) -> None:
    model = build()
    module = model.module if isinstance(model, AutoregressiveModel) else model
    x = module().sample((n,)).to(torch.int64)
    data = compression.encode(model, x, block_size=4)  # several blocks, the last one short
    y = compression.decode(model, data)
    assert torch.equal(y, x) and y.dtype == torch.int64
    header = read_header(data)
    assert header.kind == "autoregressive" and header.coder == "range"
    assert header.shape == tuple(x.shape) and header.num_levels == module.num_levels
    # the payload is the quantized conditionals' code length, plus the coder's flush,
    # and those are -log2 P(x) to a fraction of a bit per data point
    ideal = compression.code_lengths(model, x, block_size=4)
    with torch.no_grad():
        exact = -module().log_prob(x.float()).double() / math.log(2)
    assert 8 * header.payload_bytes - FLUSH_BITS <= ideal.sum() <= 8 * header.payload_bytes
    torch.testing.assert_close(ideal, exact, atol=0.05 + 1e-3 * float(exact.max()), rtol=0)


def test_a_conditional_model_codes_with_its_contexts() -> None:
    module = _pixelcnn((1, 3, 3), 7, context_dim=2)
    context = torch.randn(6, 2)
    x = module(context).sample()
    data = compression.encode(module, x, context=context)
    assert torch.equal(compression.decode(module, data, context=context), x)
    # the distribution holds its contexts: the same stream
    assert compression.decode(module(context), data).equal(x)
    other = context.clone()
    other[0, 0] += 1.0
    with pytest.raises(ValueError, match="context differs from the encoder's"):
        compression.decode(module, data, context=other)
    with pytest.raises(ValueError, match="context: expected 6 contexts"):
        compression.encode(module, x, context=context[:5])


@pytest.fixture(scope="module")
def trained_pixelcnn() -> AutoregressiveModel:
    torch.manual_seed(0)
    pair = AutoregressiveModel(PixelCNN((1, 8, 8), 17, hidden_channels=8, num_layers=2))
    infer.fit(
        pair.model,
        pair.guide,
        digits().train[:512],
        validation=None,
        epochs=3,
        batch_size=64,
        lr=3e-3,
        progress=False,
    )
    return pair


def test_a_trained_pixelcnn_writes_its_bits_per_dim(trained_pixelcnn) -> None:
    pair = trained_pixelcnn
    x = digits().test[:120]  # uint8
    m = compression.measure(pair, x)
    assert m.round_trip is True
    exact = infer.log_likelihood(pair.model, pair.guide, x).bits_per_dim
    assert exact < math.log2(17) - 0.5  # it learnt something
    assert abs(m.bits_per_dim / exact - 1) < 0.01  # header excluded
    assert m.bits_per_dim_with_header > m.bits_per_dim and m.initial_bits == 0
    out = compression.decode(pair, compression.encode(pair, x))
    assert out.dtype == torch.uint8 and torch.equal(out, x)


FACTORIZED = {
    "discretized_logistic": lambda: DiscretizedLogistic(
        torch.rand(1, 4, 3) * 16, torch.rand(1, 4, 3) + 0.3, 17
    ).to_event(3),
    "mixture_L256": lambda: DiscretizedLogisticMixture(
        torch.randn(5, 2), torch.rand(5, 2) * 255, torch.rand(5, 2) * 9 + 0.5, 256
    ).to_event(1),
    "discretized_normal_L2": lambda: Discretized(
        dist.Normal(torch.randn(2, 3), torch.rand(2, 3) + 0.2), 2
    ).to_event(2),
    "bernoulli": lambda: dist.Bernoulli(logits=torch.randn(7)).to_event(1),
    "categorical": lambda: dist.Categorical(logits=torch.randn(3, 6)).to_event(1),
}


@pytest.mark.parametrize("build", FACTORIZED.values(), ids=FACTORIZED.keys())
def test_factorized_distributions_round_trip(build) -> None:
    d = build()
    x = d.sample((30,))
    data = compression.encode(d, x, block_size=8)
    assert torch.equal(compression.decode(d, data), x.long().to(x.dtype))
    header = read_header(data)
    assert header.kind == "factorized"
    ideal = compression.code_lengths(d, x)
    assert 8 * header.payload_bytes - FLUSH_BITS <= ideal.sum() <= 8 * header.payload_bytes
    exact = -d.log_prob(x).detach().double() / math.log(2)
    torch.testing.assert_close(ideal, exact, atol=0.01 * x[0].numel(), rtol=0)


def test_a_distribution_per_data_point() -> None:
    loc = torch.rand(10, 1, 2, 2) * 16
    d = DiscretizedLogistic(loc, torch.ones_like(loc), 17).to_event(3)  # batch (10,)
    x = d.sample()
    data = compression.encode(d, x)
    assert torch.equal(compression.decode(d, data), x)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 10, 1, 2, 2\)"):
        compression.encode(d, x[:4])


class MarkovChain:
    """A first-order Markov chain over {0..L-1}^T: a LevelConditionals model of one's own."""

    def __init__(self, length: int, levels: int) -> None:
        g = torch.Generator().manual_seed(7)
        self.num_levels = levels
        self.event_shape = torch.Size([length])
        self.initial = torch.randn(levels, generator=g, dtype=torch.float64)
        self.transition = 2 * torch.randn(levels, levels, generator=g, dtype=torch.float64)

    def generate(self, n: int, context: Tensor | None, choose: Callable) -> Tensor:
        y = torch.zeros(n, *self.event_shape, dtype=torch.long)
        for t in range(self.event_shape[0]):
            params = self.initial.expand(n, -1) if t == 0 else self.transition[y[:, t - 1]]
            y[:, t] = torch.as_tensor(choose(params, (t,))).long()
        return y

    def level_log_probs(self, params: Tensor) -> Tensor:
        return params.log_softmax(-1)

    def log_prob(self, y: Tensor) -> Tensor:
        log_p = self.initial.log_softmax(-1)[y[:, 0]]
        steps = self.transition.log_softmax(-1)[y[:, :-1], y[:, 1:]]
        return log_p + steps.sum(-1)


def test_a_model_that_exposes_its_conditionals() -> None:
    chain = MarkovChain(11, 4)
    assert isinstance(chain, compression.LevelConditionals)
    torch.manual_seed(1)
    x = torch.randint(0, 4, (25, 11))
    data = compression.encode(chain, x)
    assert torch.equal(compression.decode(chain, data), x)
    ideal = compression.code_lengths(chain, x)
    torch.testing.assert_close(ideal, -chain.log_prob(x) / math.log(2), atol=0.01, rtol=0)
    other = MarkovChain(11, 4)
    other.transition = other.transition + 0.1
    with pytest.raises(ValueError, match="different model"):
        compression.decode(other, data)


# ---------------------------------------------------------------------------
# the container refuses what it cannot decode right
# ---------------------------------------------------------------------------


def test_decoding_with_the_wrong_model_shape_or_levels_is_refused() -> None:
    model = _pixelcnn((1, 3, 3), 17, seed=0)
    x = model().sample((5,))
    data = compression.encode(model, x)
    with pytest.raises(ValueError, match="encoded with a different model"):
        compression.decode(_pixelcnn((1, 3, 3), 17, seed=1), data)  # other weights
    with pytest.raises(ValueError, match="encoded with 17 levels; this model has 16"):
        compression.decode(_pixelcnn((1, 3, 3), 16), data)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 1, 4, 3\)"):
        compression.decode(_pixelcnn((1, 4, 3), 17), data)
    with pytest.raises(ValueError, match=r"shape: the data have shape \(5, 1, 3, 3\)"):
        compression.decode(model, data, shape=(4, 1, 3, 3))
    vae = VAE.for_images((1, 3, 3), 2, likelihood="discretized_logistic", num_levels=17)
    with pytest.raises(ValueError, match="written by the autoregressive coder"):
        compression.decode(vae, data)
    d = DiscretizedLogistic(torch.zeros(1, 3, 3), 1.0, 17).to_event(3)
    with pytest.raises(ValueError, match="written by the autoregressive coder"):
        compression.decode(d, data)
    assert torch.equal(compression.decode(model, data, shape=(5, 1, 3, 3)), x)


def test_damaged_or_foreign_bytes_are_refused() -> None:
    model = _wavenet(8, 5)
    x = model().sample((6,))
    data = compression.encode(model, x)
    size = read_header(data).size
    flipped = bytearray(data)
    flipped[size + 2] ^= 0x5A
    with pytest.raises(ValueError, match="damaged|checksum"):
        compression.decode(model, bytes(flipped))
    with pytest.raises(ValueError, match="truncated"):
        compression.decode(model, data[:-4])
    with pytest.raises(ValueError, match="truncated"):
        compression.decode(model, data + b"\0\0\0\0")
    with pytest.raises(ValueError, match="not a pyro_dgm compressed file"):
        compression.decode(model, b"\x89PNG" + data[4:])
    newer = bytearray(data)
    newer[4] = compression.FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="format version 2 is not supported"):
        compression.decode(model, bytes(newer))
    with pytest.raises(ValueError, match="data: expected bytes"):
        read_header("PDGM")


def test_bad_data_is_refused_before_coding() -> None:
    model = _pixelcnn((1, 2, 2), 5)
    with pytest.raises(ValueError, match=r"x: expected integers in \{0, \.\.\., 4\}.*\[5"):
        compression.encode(model, torch.full((2, 1, 2, 2), 5))
    with pytest.raises(ValueError, match=r"x: expected integers in .*0\.5"):
        compression.encode(model, torch.full((2, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 1, 2, 2\)"):
        compression.encode(model, torch.zeros(2, 1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected a Tensor or a numpy array"):
        compression.encode(model, [[0, 1]])
    with pytest.raises(ValueError, match="block_size: expected an int >= 1"):
        compression.encode(model, torch.zeros(2, 1, 2, 2), block_size=0)
    with pytest.raises(ValueError, match="context: a DiscretizedLogistic takes no context"):
        compression.encode(
            DiscretizedLogistic(torch.zeros(3), 1.0, 5),
            torch.zeros(1, 3),
            context=torch.zeros(1, 2),
        )
    with pytest.raises(ValueError, match="model: expected a PixelCNN or WaveNet"):
        compression.encode(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="continuous|enumerable support"):
        compression.encode(dist.Normal(torch.zeros(3), 1.0).to_event(1), torch.zeros(1, 3))


def test_files_of_integer_arrays_keep_their_dtype() -> None:
    model = _pixelcnn((1, 3, 2), 256, "categorical")
    array = model().sample((4,)).numpy().astype(np.uint8)
    blob = compression.compress_file(model, array)
    back = compression.decompress_file(model, blob)
    assert back.dtype == np.uint8 and np.array_equal(back, array)
    as_int16 = compression.decompress_file(
        model, compression.compress_file(model, array.astype("<i2"))
    )
    assert as_int16.dtype == np.int16
    with pytest.raises(
        ValueError, match="array: expected an integer numpy array, got dtype float32"
    ):
        compression.compress_file(model, array.astype(np.float32))
    with pytest.raises(ValueError, match="array: expected a numpy array"):
        compression.compress_file(model, torch.from_numpy(array))


def test_without_constriction_the_codecs_name_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "constriction", None)
    model = _pixelcnn((1, 2, 2), 3)
    with pytest.raises(ImportError, match=r"pip install pyro-dgm\[compress\]"):
        compression.encode(model, torch.zeros(1, 1, 2, 2))
    # what needs no coder still works
    assert compression.code_lengths(model, torch.zeros(1, 1, 2, 2)).shape == (1,)


def test_importing_pyro_dgm_does_not_import_constriction() -> None:
    code = "import sys, pyro_dgm, pyro_dgm.compression; print('constriction' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# bits-back coding of VAEs
# ---------------------------------------------------------------------------

VAES = {
    "bernoulli_L2": lambda: (VAE.for_images((1, 4, 5), 3, channels=4, context_dim=8), 2),
    "logistic_L17": lambda: (
        VAE.for_vectors(6, 2, hidden_dims=(8,), likelihood="discretized_logistic", num_levels=17),
        17,
    ),
    "mixture_L256": lambda: (
        VAE.for_images(
            (1, 3, 3),
            4,
            likelihood="discretized_logistic_mixture",
            num_levels=256,
            num_components=2,
            channels=4,
            context_dim=8,
        ),
        256,
    ),
}


@pytest.mark.parametrize("build", VAES.values(), ids=VAES.keys())
def test_bits_back_round_trips(build) -> None:
    torch.manual_seed(0)
    vae, levels = build()
    x = vae.sample(9).long()
    data = compression.encode(vae, x, latent_bits=10)
    assert torch.equal(compression.decode(vae, data), x)
    header = read_header(data)
    assert (header.kind, header.coder, header.latent_bits) == ("bits-back", "ans", 10)
    assert header.num_levels == levels
    # the stack grows by each data point's net cost: the payload is the initial bits plus
    # their sum, to the last word
    net = compression.code_lengths(vae, x, latent_bits=10)
    grown = 8 * header.payload_bytes - 32 * header.initial_words
    assert abs(grown - float(net.sum())) <= 64
    with pytest.raises(ValueError, match="different model"):
        compression.decode(build()[0], data)  # fresh weights


def test_bits_back_costs_the_negative_elbo_of_a_trained_vae() -> None:
    """Measured: about 139 bits per image, within 0.5% of -ELBO/log 2 (40 test digits)."""
    torch.manual_seed(0)
    data = digits()
    vae = VAE.for_images(
        (1, 8, 8), 8, likelihood="discretized_logistic", num_levels=17, channels=16, context_dim=64
    )
    infer.fit(
        vae.model,
        vae.guide,
        data.train,
        validation=None,
        epochs=8,
        batch_size=64,
        lr=3e-3,
        progress=False,
    )
    x = data.test[:40]
    m = compression.measure(vae, x)
    assert m.round_trip is True and m.initial_bits > 0
    elbo = infer.log_likelihood(vae.model, vae.guide, x, num_particles=200)
    neg_elbo_bits = -elbo.nats / math.log(2)  # per image
    net_bits = m.net_bits_per_dim * m.num_dims
    assert neg_elbo_bits < 64 * math.log2(17) * 0.6  # trained: well below uniform coding
    assert abs(net_bits / neg_elbo_bits - 1) < 0.03


def test_bits_back_refuses_what_it_cannot_code() -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    common = {"likelihood": "discretized_logistic", "num_levels": 5, "channels": 4}
    with pytest.raises(ValueError, match="standard normal prior"):
        compression.encode(VAE.for_images((1, 4, 4), 2, prior="flow", **common), x)
    with pytest.raises(ValueError, match="standard normal prior"):
        compression.encode(VAE.for_images((1, 4, 4), 2, prior="vamp", **common), x)
    with pytest.raises(ValueError, match="diagonal Gaussian posterior"):
        compression.encode(VAE.for_images((1, 4, 4), 2, posterior="iaf", **common), x)
    gaussian = VAE.for_images((1, 4, 4), 2, likelihood="gaussian", channels=4)
    with pytest.raises(ValueError, match="discrete likelihood"):
        compression.encode(gaussian, x.float())
    vae = VAE.for_images((1, 4, 4), 2, **common)
    with pytest.raises(ValueError, match="latent_bits: expected an int in"):
        compression.encode(vae, x, latent_bits=20)
    with pytest.raises(ValueError, match="a VAE takes no context"):
        compression.encode(vae, x, context=torch.zeros(2, 3))
    deq = UniformDequantization(
        dist.Normal(torch.zeros(16), 1.0).to_event(1), 5, event_shape=(1, 4, 4)
    )
    with pytest.raises(ValueError, match="per-dimension conditionals"):
        compression.encode(deq, x)
    assert isinstance(vae.prior, StandardNormalPrior)
