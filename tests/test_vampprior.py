"""Issue 21: a VampPrior VAE with the discretized logistic mixture likelihood on a
1,000-image digits subset collapsed (every latent unit inactive, the IWAE bound equal
to the ELBO) without KL warm-up. Its defaults now warm the KL up; it keeps active units
and is not worse than the standard normal prior by more than the standard error."""

from __future__ import annotations

import warnings

import pytest
import torch

from pyro_dgm import datasets, infer
from pyro_dgm.diagnostics import PosteriorCollapseWarning, active_units
from pyro_dgm.models import VAE
from pyro_dgm.models.vae import VAMP_WARMUP_STEPS, StandardNormalPrior, VampPrior

# small nets and a high learning rate keep this at about 10 s per model on one thread;
# at these settings the VampPrior without warm-up collapses within 150 steps (checked on
# the commit before the fix, whose default was no warm-up)
SMALL = {"latent_dim": 16, "channels": 8, "context_dim": 32, "num_levels": 17}
EPOCHS, BATCH, LR = 60, 100, 3e-3  # 600 steps on 1,000 images


def _train(prior: str, digits: datasets.Dataset) -> tuple[VAE, infer.LogLikelihood]:
    torch.manual_seed(0)
    vae = VAE.for_images(
        (1, 8, 8),
        prior=prior,
        likelihood="discretized_logistic_mixture",
        name=f"vamp_test_{prior}",
        **SMALL,
    )
    infer.fit(
        vae.model,
        vae.guide,
        digits.train[:1000],
        validation=digits.validation,
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=LR,
        patience=None,
        progress=False,
        seed=0,
    )
    return vae, infer.log_likelihood(vae.model, vae.guide, digits.test, num_particles=4)


def test_vamp_prior_defaults_warm_the_kl_up() -> None:
    vamp = VAE.for_images(
        (1, 8, 8), prior="vamp", likelihood="bernoulli", **SMALL | {"num_levels": None}
    )
    assert isinstance(vamp.prior, VampPrior) and vamp.warmup_steps == VAMP_WARMUP_STEPS > 0
    assert VAE.for_images((1, 8, 8), likelihood="bernoulli").warmup_steps == 0
    assert VAE.for_images((1, 8, 8), prior="vamp", warmup_steps=0).warmup_steps == 0
    # the constructor with a VampPrior module has the same default
    v = vamp
    assert VAE(v.encoder, v.decoder, v.prior, v.variational, v.likelihood, 16).warmup_steps > 0
    other = VAE(v.encoder, v.decoder, StandardNormalPrior(16), v.variational, v.likelihood, 16)
    assert other.warmup_steps == 0


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.digits()


def test_vamp_prior_with_the_mixture_likelihood_does_not_collapse(
    digits: datasets.Dataset,
) -> None:
    vamp, vamp_ll = _train("vamp", digits)
    normal, normal_ll = _train("normal", digits)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)  # collapse would fail here
        units = active_units(vamp, digits.test)
    assert units.count > 0 and units.kl > 1.0
    assert active_units(normal, digits.test).count > 0
    # nats per image (higher is better): at most one standard error below the normal prior
    assert vamp_ll.nats >= normal_ll.nats - normal_ll.stderr, (vamp_ll, normal_ll)


def test_the_cli_flag_kl_warmup_reaches_the_vae(digits: datasets.Dataset) -> None:
    from pyro_dgm import cli

    args = cli.build_parser().parse_args(
        ["fit", "--data", "digits", "--model", "vae", "--kl-warmup", "120"]
    )
    assert args.warmup_steps == 120  # the RunConfig setting warmup_steps (--warmup-steps too)
    config = cli.RunConfig(data="digits", model="vae", prior="vamp", warmup_steps=120)
    assert cli.build_pair(config, digits)[1].warmup_steps == 120
    # the default: VAMP_WARMUP_STEPS for the VampPrior, none for the other priors
    vamp = cli.resolve_config(cli.RunConfig(data="digits", model="vae", prior="vamp"), digits)
    assert vamp.warmup_steps == VAMP_WARMUP_STEPS
    assert cli.build_pair(vamp, digits)[1].warmup_steps == VAMP_WARMUP_STEPS
    normal = cli.resolve_config(cli.RunConfig(data="digits", model="vae"), digits)
    assert normal.warmup_steps == 0
    with pytest.raises(ValueError, match="--warmup-steps: is a VAE setting"):
        cli.resolve_config(cli.RunConfig(data="digits", model="pixelcnn", warmup_steps=5), digits)
    with pytest.raises(ValueError, match="warmup_steps"):
        cli.RunConfig(data="digits", model="vae", warmup_steps=-1)
