"""The VAE's categorical likelihood (issue 21): a softmax over the L levels of each pixel,
its exact log-probability against log_softmax by hand, the domain checks of the other
discrete likelihoods, the builders, the conformance of the pair and the CLI flag."""

from __future__ import annotations

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_dgm import cli, datasets, infer
from pyro_dgm.models import VAE
from pyro_dgm.models.vae import LIKELIHOODS, CategoricalLikelihood


@pytest.mark.parametrize("levels", [17, 256])
def test_log_prob_is_the_log_softmax_of_each_pixels_level(levels: int) -> None:
    lik = CategoricalLikelihood((2, 3, 4), num_levels=levels)
    assert lik.param_shape == (levels * 2, 3, 4)
    params = torch.randn(5, levels * 2, 3, 4)
    x = torch.randint(0, levels, (5, 2, 3, 4))
    # by hand: the logits of channel c and level l sit at l * C + c of the first event dim
    logits = params.reshape(5, levels, 2, 3, 4).movedim(1, -1)
    by_hand = torch.log_softmax(logits, -1).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    d = lik(params)
    assert d.batch_shape == (5,) and d.event_shape == (2, 3, 4)
    assert torch.allclose(d.log_prob(x.float()), by_hand.sum((-3, -2, -1)), atol=1e-5)
    assert torch.allclose(d.log_prob(x), d.log_prob(x.float()))


def test_the_masses_sum_to_one_and_moments_are_the_levels() -> None:
    lik = CategoricalLikelihood((1, 1, 2), num_levels=3)
    params = torch.randn(3, 1, 2)
    levels = torch.cartesian_prod(torch.arange(3.0), torch.arange(3.0)).reshape(-1, 1, 1, 2)
    d = lik(params)
    assert torch.allclose(d.log_prob(levels).exp().sum(), torch.tensor(1.0), atol=1e-6)
    p = torch.softmax(params.movedim(0, -1), -1)  # (1, 2, 3)
    mean = (p * torch.arange(3.0)).sum(-1)
    assert torch.allclose(d.mean, mean)
    assert torch.allclose(d.variance, (p * (torch.arange(3.0) - mean.unsqueeze(-1)) ** 2).sum(-1))
    draws = d.sample((2000,))
    assert draws.dtype == torch.float32 and set(draws.unique().tolist()) <= {0.0, 1.0, 2.0}
    assert torch.allclose(draws.mean(0), mean, atol=0.08)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.full((2, 1, 2, 2), 17.0), r"integers in \{0, ..., 16\}, got values \[17.0\]"),
        (torch.full((2, 1, 2, 2), 1.5), r"got values \[1.5\]"),
        (torch.full((2, 1, 2, 2), -1.0), r"got values \[-1.0\]"),
        (torch.full((2, 1, 2, 2), float("nan")), "x must hold integers"),
    ],
)
def test_values_outside_the_levels_are_refused(bad: torch.Tensor, match: str) -> None:
    vae = VAE.for_images(
        (1, 2, 2), 2, likelihood="categorical", num_levels=17, channels=2, context_dim=4
    )
    with pytest.raises(ValueError, match=match):
        vae.model(bad)
    with pytest.raises(ValueError, match="needs num_levels"):
        VAE.for_images((1, 2, 2), likelihood="categorical")
    with pytest.raises(ValueError, match="num_levels"):
        CategoricalLikelihood((4,), num_levels=1)


def test_a_categorical_vae_trains_on_digits_for_images_and_vectors() -> None:
    assert "categorical" in LIKELIHOODS
    y = datasets.digits().train[:64]
    vae = VAE.for_images(
        (1, 8, 8), 4, likelihood="categorical", num_levels=17, channels=4, context_dim=16
    )
    before = infer.log_likelihood(vae.model, vae.guide, y).nats
    infer.fit(vae.model, vae.guide, y, epochs=15, batch_size=32, lr=3e-3, progress=False)
    after = infer.log_likelihood(vae.model, vae.guide, y).nats
    assert after > before + 20  # from uniform (64 log 17 = 181 nats) towards the data
    assert vae.sample(3).shape == (3, 1, 8, 8) and vae.reconstruct(y[:2]).shape == (2, 1, 8, 8)
    flat = VAE.for_vectors(
        64, 2, likelihood="categorical", num_levels=17, hidden_dims=(16,), name="flat"
    )
    loss = Trace_ELBO().differentiable_loss(flat.model, flat.guide, y.reshape(64, 64))
    assert torch.isfinite(loss)


def test_the_cli_builds_a_categorical_vae() -> None:
    digits = datasets.digits()
    config = cli.RunConfig(data="digits", model="vae", likelihood="categorical")
    data, vae = cli.build_pair(config, digits)
    assert isinstance(vae.likelihood, CategoricalLikelihood)
    assert vae.likelihood.num_levels == 17 and data is digits
    args = cli.build_parser().parse_args(
        ["fit", "--data", "digits", "--model", "vae", "--likelihood", "categorical"]
    )
    assert args.likelihood == "categorical"
