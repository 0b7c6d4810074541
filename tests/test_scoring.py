"""The chunking of the importance-weighted bound (issue 21): points and draws per pass
from a memory budget, channels-last convolutions, the same estimator as before."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pyro_dgm import flows, infer
from pyro_dgm.infer import chunking
from pyro_dgm.infer.chunking import (
    FALLBACK_BATCH_SIZE,
    FALLBACK_CHUNK_SIZE,
    StateChangeError,
    channels_last_convolutions,
    choose_chunks,
    draw_chunks,
    has_latent_sites,
    peak_bytes,
)
from pyro_dgm.infer.data import as_batch
from pyro_dgm.infer.traces import log_importance_weights, plate_nesting
from pyro_dgm.models import VAE, FlowModel
from pyro_dgm.models.dequantization import UniformDequantization

# z ~ N(0, 1), x | z ~ N(z, s^2): p(x) = N(0, 1 + s^2), the posterior N(x / (1 + s^2), s^2 / (1 + s^2))
NOISE = 0.5


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        pyro.sample("x", dist.Normal(z, NOISE).to_event(1), obs=x)


def exact_guide(x):
    var = NOISE**2 / (1 + NOISE**2)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x / (1 + NOISE**2), var**0.5).to_event(1))


def rough_guide(x):  # too wide and shifted: the IWAE bound is below log p(x)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(0.7 * x, 0.7).to_event(1))


def exact_log_p(x):
    return dist.Normal(0.0, (1 + NOISE**2) ** 0.5).log_prob(x).sum(-1).double()


def previous_release(model, guide, x, num_samples, batch_size, chunk_size):
    """The loop of importance_log_likelihood before the memory budget, verbatim in effect."""
    nesting = plate_nesting(model, guide, x[:2])
    columns = []
    with torch.no_grad(), poutine.block():
        for batch in x.split(batch_size):
            chunks = [
                log_importance_weights(
                    model, guide, batch, min(chunk_size, num_samples - start), nesting
                )[0]
                for start in range(0, num_samples, chunk_size)
            ]
            columns.append(torch.cat(chunks))
    return torch.cat(columns, dim=1).logsumexp(0) - math.log(num_samples)


def score(pair_model, guide, x, **kwargs):
    kwargs.setdefault("pareto_k_threshold", None)
    return infer.importance_log_likelihood(pair_model, guide, x, **kwargs)


def test_fixed_chunks_draw_what_the_previous_release_drew():
    x = torch.randn(10, 3)
    vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="scoring_vae")
    for b, c in ((4, 7), (10, 30)):
        torch.manual_seed(3)
        before = previous_release(vae.model, vae.guide, x, 30, b, c)
        torch.manual_seed(3)
        now = score(vae.model, vae.guide, x, num_samples=30, batch_size=b, chunk_size=c)
        assert torch.equal(now.values, before)


def test_budget_probes_change_no_later_draw():
    # the probes restore the random state: a budget that gives the same passes as fixed
    # sizes gives the same numbers
    x = torch.randn(6, 3)
    points, draws = choose_chunks(model, rough_guide, as_batch(x), 20, 1, 2**20)
    assert draws == 20  # all draws of a point in one pass
    torch.manual_seed(0)
    fixed = score(model, rough_guide, x, num_samples=20, batch_size=points, chunk_size=draws)
    torch.manual_seed(0)
    budget = score(model, rough_guide, x, num_samples=20, memory_budget=2**20)
    assert torch.equal(fixed.values, budget.values)


@pytest.mark.parametrize(
    "sizes",
    [
        {},
        {"memory_budget": 4096},
        {"batch_size": 1, "chunk_size": 3},
        {"batch_size": 7, "chunk_size": 50},
        {"chunk_size": 9},
        {"batch_size": 2},
    ],
)
def test_exact_guide_gives_log_p_whatever_the_chunks(sizes):
    # every weight of the exact posterior is p(x): any mix-up of points or draws between
    # passes would show
    x = 2 * torch.randn(11, 3)
    result = score(model, exact_guide, x, num_samples=50, **sizes)
    assert result.log_weights.shape == (50, 11)
    torch.testing.assert_close(result.values, exact_log_p(x), atol=1e-4, rtol=0)


def test_iwae_under_the_budget_reaches_the_closed_form_log_p():
    torch.manual_seed(1)
    x = 1.5 * torch.randn(40, 3)
    exact = exact_log_p(x)
    elbo = score(model, rough_guide, x, num_samples=1, batch_size=40, chunk_size=1).values
    result = score(model, rough_guide, x, num_samples=4000, memory_budget=2**18)
    gap_elbo = float((exact - elbo).mean())
    gap = float((exact - result.values).mean())
    assert gap_elbo > 0.3  # the rough guide leaves a real gap at K = 1
    assert -0.02 < gap < 0.05 * gap_elbo  # the bound closes it, and stays below log p


def test_choose_chunks_fits_the_budget_and_splits_draws_evenly():
    batch = as_batch(torch.randn(2, 3))
    small = choose_chunks(model, rough_guide, batch, 1000, 1, 2**14)
    large = choose_chunks(model, rough_guide, batch, 1000, 1, 2**24)
    assert small[0] * small[1] < large[0] * large[1]
    assert large[1] == 1000  # all draws of a point in one pass when they fit
    passes = draw_chunks(1000, small[1])
    assert sum(passes) == 1000 and max(passes) - min(passes) <= len(passes)
    assert choose_chunks(model, rough_guide, batch, 1000, 1, 2**14, 5, None)[0] == 5
    assert choose_chunks(model, rough_guide, batch, 1000, 1, 2**14, None, 10)[1] == 10


def _bytes_per_draw(model, guide, batch, nesting) -> float:
    """The slope of the peak bytes between 1,024 and 4,096 draws of each point: far past
    any tensor made once per pass."""
    with torch.no_grad():
        few, many = (
            peak_bytes(lambda k=k: log_importance_weights(model, guide, batch, k, nesting))
            for k in (1024, 4096)
        )
    return (many - few) / (3072 * len(batch))


def test_a_tensor_made_once_per_pass_does_not_hide_the_cost_of_the_draws():
    # the guide makes a 200 kB tensor once per pass, as a VampPrior encodes its
    # pseudo-inputs, and each draw makes 12 kB in the model: with probes of 2 and 8
    # draws the first hid the second, and the passes came out far over the budget
    def once_per_pass_guide(x):
        shared = torch.ones(50_000)  # made, used and freed in every pass
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.7 * x * shared[0], 0.7).to_event(1))

    def wide_model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            wide = z.unsqueeze(-1).expand(*z.shape, 1000).exp()  # 12 kB per draw
            loc = wide.mean(-1).log()
            pyro.sample("x", dist.Normal(loc, NOISE).to_event(1), obs=x)

    batch = as_batch(torch.randn(2, 3))
    budget = 2**22
    with torch.no_grad():  # as importance_log_likelihood chooses them
        points, draws = choose_chunks(wide_model, once_per_pass_guide, batch, 10_000, 1, budget)
    per_draw = _bytes_per_draw(wide_model, once_per_pass_guide, batch, 1)
    assert per_draw > 10_000
    assert 0.25 * budget <= points * draws * per_draw <= 1.5 * budget


def test_probes_grow_only_while_they_are_small_against_the_budget(monkeypatch):
    peaks = []

    def recorded(fn, guard=False):
        peaks.append(peak_bytes(fn, guard))
        return peaks[-1]

    monkeypatch.setattr(chunking, "peak_bytes", recorded)
    batch = as_batch(torch.randn(2, 3))
    small = 2**12
    with torch.no_grad():
        choose_chunks(model, rough_guide, batch, 1000, 1, small)
        # 2 and 8 draws, then 32 only while under a quarter of the budget
        assert len(peaks) in (2, 3) and max(peaks[2:], default=0) <= small
        assert len(peaks) == 2 or peaks[1] < small / 4
        peaks.clear()
        choose_chunks(model, rough_guide, batch, 1000, 1, 2**30)
        assert len(peaks) == len(chunking.PROBE_DRAWS)  # every probe, up to 128 draws


def test_a_vamp_prior_vae_gets_passes_within_its_budget():
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE.for_images(
        (1, 8, 8),
        latent_dim=4,
        prior="vamp",
        likelihood="discretized_logistic",
        num_levels=17,
        name="scoring_vamp_chunks",
    )
    x = torch.randint(0, 17, (2, 1, 8, 8)).float()
    batch = as_batch(x)
    nesting = plate_nesting(vae.model, vae.guide, batch)
    budget = 2**23
    with torch.no_grad():
        points, draws = choose_chunks(vae.model, vae.guide, batch, 1000, nesting, budget)
    per_draw = _bytes_per_draw(vae.model, vae.guide, batch, nesting)
    assert points * draws * per_draw <= 1.5 * budget


def test_peak_bytes_counts_what_is_alive_and_guards_state():
    def two_at_once():
        a = torch.zeros(10_000)
        b = a + 1
        return (a * b).sum()

    assert 80_000 <= peak_bytes(two_at_once) < 200_000
    weight = torch.zeros(3)
    with pytest.raises(StateChangeError):
        peak_bytes(lambda: weight.add_(1.0), guard=True)
    assert torch.equal(weight, torch.zeros(3))  # stopped before it wrote


def _image_pair(name: str) -> UniformDequantization:
    torch.manual_seed(0)
    flow = flows.MultiScaleRealNVP((1, 4, 4), 2, 1, 8, num_blocks=1)
    return UniformDequantization(flow, 5, event_shape=(1, 4, 4), name=name)


def test_a_pair_that_initialises_itself_is_scored_as_before():
    # ActNorm initialises from the first batch it scores: a probe on two points must not
    # do it, so such a pair gets the previous release's passes and the same numbers
    y = torch.randint(0, 5, (12, 1, 4, 4))
    pair = _image_pair("scoring_actnorm_a")
    assert choose_chunks(pair.model, pair.guide, as_batch(y[:2]), 40, 1, 2**20) == (
        FALLBACK_BATCH_SIZE,
        FALLBACK_CHUNK_SIZE,
    )
    torch.manual_seed(5)
    now = score(pair.model, pair.guide, y, num_samples=40, channels_last=False)
    twin = _image_pair("scoring_actnorm_b")
    torch.manual_seed(5)
    before = previous_release(twin.model, twin.guide, y, 40, 128, 100)
    assert torch.equal(now.values, before)


def test_channels_last_changes_only_rounding_and_is_restored():
    y = torch.randint(0, 5, (6, 1, 4, 4))
    pair = _image_pair("scoring_layout")
    score(pair.model, pair.guide, y, num_samples=2)  # initialise the ActNorms
    convs = [m for m in pair.modules() if type(m) is nn.Conv2d]
    assert convs
    torch.manual_seed(2)
    nchw = score(pair.model, pair.guide, y, num_samples=30, channels_last=False)
    torch.manual_seed(2)
    nhwc = score(pair.model, pair.guide, y, num_samples=30, channels_last=True)
    torch.testing.assert_close(nhwc.values, nchw.values, atol=1e-4, rtol=0)
    assert all(m.weight.is_contiguous() for m in convs)
    with pytest.raises(RuntimeError, match="inside"), channels_last_convolutions(pair.model) as n:
        assert n == len(convs)
        assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
        raise RuntimeError("inside")
    assert all(m.weight.is_contiguous() for m in convs)


def test_exact_pair_scores_one_draw():
    pair = FlowModel(flows.MAF(2, num_layers=1), name="scoring_exact")
    x = torch.randn(7, 2)
    assert not has_latent_sites(pair.model, pair.guide, as_batch(x))
    result = score(pair.model, pair.guide, x, num_samples=25)
    assert result.bound == "exact" and result.log_weights.shape == (25, 7)
    assert torch.equal(result.log_weights, result.log_weights[:1].expand(25, -1))
    exact = infer.log_likelihood(pair.model, pair.guide, x)
    assert abs(float(result.values.mean()) - exact.nats) < 1e-5


def test_loader_batches_are_split_into_passes():
    # a loader's batches of 10 scored in passes of 4 points: with the exact guide every
    # point must still get its own log p(x) (a DataLoader draws from the global random
    # state as it iterates, so its draws are not those of a tensor's passes)
    x = 2 * torch.randn(10, 3)
    loader = DataLoader(TensorDataset(x), batch_size=10)
    result = score(model, exact_guide, loader, num_samples=12, batch_size=4, chunk_size=5)
    assert result.log_weights.shape == (12, 10)
    torch.testing.assert_close(result.values, exact_log_p(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"memory_budget": 0}, "memory_budget"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_size": 1.5}, "chunk_size"),
        ({"channels_last": "yes"}, "channels_last"),
    ],
)
def test_bad_sizes_are_refused(kwargs, named):
    with pytest.raises(ValueError, match=named):
        score(model, rough_guide, torch.randn(4, 3), num_samples=5, **kwargs)


def test_elbo_of_the_importance_draws_matches_the_closed_form() -> None:
    # z ~ N(0, 1), x | z ~ N(z, 1), guide N(x / 2, 0.6^2): the ELBO is known in closed form,
    # E_q[log N(z; 0, 1) + log N(x; z, 1)] + H[q], with E_q[z^2] = m^2 + s^2
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x / 2, 0.6))

    x = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    pyro.set_rng_seed(0)
    result = infer.importance_log_likelihood(model, guide, x, num_samples=20000)
    m, s = x / 2, 0.6
    log_2pi = math.log(2 * math.pi)
    expected = (
        -0.5 * (m**2 + s**2)
        - 0.5 * log_2pi  # E log N(z; 0, 1)
        - 0.5 * ((x - m) ** 2 + s**2)
        - 0.5 * log_2pi  # E log N(x; z, 1)
        + 0.5 * math.log(2 * math.pi * math.e * s**2)  # entropy of q
    )
    elbo = result.elbo()
    assert elbo.bound == "ELBO(particles=20000)" and elbo.num_points == 3
    assert abs(elbo.nats - float(expected.mean())) < 0.01
    assert elbo.nats < result.summary().nats  # the ELBO lies below the IWAE bound
