"""Active latent units (Burda et al., 2016) and the posterior-collapse warning (issue 21):
a VAE whose encoder ignores x reports 0 active units and warns, a trained one reports
active units; ``pyro-dgm evaluate`` writes the count and prints it, and warns of collapse."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from pyro_dgm import cli, datasets, infer
from pyro_dgm.diagnostics import ActiveUnits, PosteriorCollapseWarning, active_units
from pyro_dgm.models import VAE


class ConstantEncoder(nn.Module):
    """Features that ignore x: every posterior is the same (a collapsed encoder)."""

    context_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.h = nn.Parameter(torch.randn(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h.expand(len(x), 8)


def _digits() -> torch.Tensor:
    return datasets.digits().train[:200]


def test_a_collapsed_vae_reports_no_active_unit_and_warns() -> None:
    vae = VAE.for_images(
        (1, 8, 8), 4, encoder=ConstantEncoder(), likelihood="categorical", num_levels=17,
        channels=4,
    )  # fmt: skip
    with pytest.warns(PosteriorCollapseWarning, match="0 of 4 latent units active"):
        units = active_units(vae, _digits())
    assert units.count == 0 and units.collapsed and units.latent_dim == 4
    assert torch.allclose(units.variances, torch.zeros(4, dtype=torch.float64))
    # the shared posterior is not the prior: the KL is not zero, the count alone warns
    assert units.kl > 0.1


def test_a_vae_whose_kl_is_near_zero_warns_even_with_moving_means() -> None:
    # a VampPrior whose posteriors are all (nearly) the same: KL ~ 0
    vae = VAE.for_images((1, 8, 8), 2, prior="vamp", likelihood="bernoulli", channels=4)
    x = (_digits() >= 8).to(torch.uint8)
    with pytest.warns(PosteriorCollapseWarning, match="average KL"):
        units = active_units(vae, x)
    assert units.kl is not None and units.kl < 0.1


def test_a_trained_vae_has_active_units_and_no_warning() -> None:
    x = _digits()
    vae = VAE.for_images(
        (1, 8, 8), 4, likelihood="discretized_logistic", num_levels=17, channels=8,
        context_dim=32,
    )  # fmt: skip
    infer.fit(vae.model, vae.guide, x, epochs=40, batch_size=50, lr=3e-3, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)
        units = active_units(vae, x, batch_size=64)  # batches give the same answer
    assert units.count > 0 and units.kl > 1.0 and units.exact_mean
    assert units.variances.shape == (4,)
    assert units.count == int((units.variances > 0.01).sum())
    direct = vae.posterior(x).mean.double().var(0)  # Burda et al.'s Cov_x(E_q[z_u])
    assert torch.allclose(units.variances, direct)
    assert json.loads(json.dumps(units.to_dict()))["count"] == units.count
    assert str(units).startswith(f"active units {units.count} of 4")


def test_a_flow_posterior_uses_the_monte_carlo_mean() -> None:
    vae = VAE.for_vectors(6, 2, posterior="iaf", hidden_dims=(8,), flow_hidden_dims=(8,))
    units = active_units(vae, torch.randn(30, 6), warn=False, num_samples=4)
    assert not units.exact_mean and units.num_samples == 4 and units.variances.shape == (2,)


def test_bad_arguments_are_refused() -> None:
    vae = VAE.for_vectors(3, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="at least 2 points"):
        active_units(vae, torch.randn(1, 3))
    with pytest.raises(ValueError, match="posterior"):
        active_units(object(), torch.randn(5, 3))
    with pytest.raises(ValueError, match="threshold"):
        active_units(vae, torch.randn(5, 3), threshold=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        active_units(vae, torch.randn(5, 3), num_samples=0)


def test_evaluate_reports_active_units_and_warns_of_collapse(tmp_path, capsys) -> None:
    out = tmp_path / "vae"
    fast = ["--epochs", "1", "--hidden", "8", "--num-samples", "4", "--quiet"]
    # one epoch of a VampPrior without warm-up: the means of q(z | x) barely move with x
    argv = ["fit", "--data", "moons", "--model", "vae", "--prior", "vamp", "--kl-warmup", "0"]
    with pytest.warns(PosteriorCollapseWarning):  # fit's report says it too
        assert cli.main([*argv, *fast, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["active_units"]["collapsed"] and metrics["active_units"]["latent_dim"] == 2
    assert metrics["posterior_collapse"].startswith("posterior collapse")
    capsys.readouterr()
    with pytest.warns(PosteriorCollapseWarning):
        assert cli.main(["evaluate", str(out), "--max-points", "50", "--num-samples", "8"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "diagnostics.json").read_text())
    units = report["active_units"]
    assert units["latent_dim"] == 2 and units["num_points"] == 50 and units["collapsed"]
    assert report["posterior_collapse"].startswith("posterior collapse")
    assert f"active units {units['count']} of 2 (POSTERIOR COLLAPSE)" in printed
    assert ActiveUnits.__name__ in dir(__import__("pyro_dgm").diagnostics)


def test_a_healthy_fit_records_its_active_units_without_a_warning(tmp_path) -> None:
    import warnings

    out = tmp_path / "vae"
    argv = ["fit", "--data", "digits", "--model", "vae", "--epochs", "3", "--hidden", "8"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PosteriorCollapseWarning)
        assert cli.main([*argv, "--num-samples", "4", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["active_units"]["count"] > 0 and metrics["posterior_collapse"] is None
