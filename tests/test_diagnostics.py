"""Diagnostics: per-point PSIS k-hat, pPCA likelihoods, ELBO surgery, ArviZ, evaluate."""

from __future__ import annotations

import argparse
import json
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.importance import psis_diagnostic
from sklearn.decomposition import PCA

from pyro_dgm import cli, diagnostics, infer
from pyro_dgm.cli.evaluate import add_evaluate_parser, evaluate_command, run_evaluate
from pyro_dgm.diagnostics.surgery import _log_q_agg
from pyro_dgm.infer.metrics import HeavyTailWarning, pareto_k
from pyro_dgm.models import VAE

F64 = torch.float64


# -- per-point PSIS k-hat -------------------------------------------------------------------
def _prior_pair(scales: torch.Tensor, dim: int = 2):
    """x independent of z ~ N(0, I): the posterior of z is N(0, I) for every point; point i's
    guide is N(0, s_i^2 I), so its weights have k = 1 - s_i^2 (for s_i < 1). The data are
    the points' indices (the guide looks its scale up by them)."""

    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros(dim, dtype=F64), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(torch.zeros_like(x), 1.0), obs=x)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            scale = scales.to(F64)[x.long()][:, None].expand(len(x), dim)
            pyro.sample("z", dist.Normal(torch.zeros(len(x), dim, dtype=F64), scale).to_event(1))

    return model, guide


def test_pareto_k_of_each_point_is_one_minus_s_squared() -> None:
    scales = torch.tensor([0.2, 0.3, 0.5, 0.7, 0.9])
    model, guide = _prior_pair(scales)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeavyTailWarning)
        est = infer.importance_log_likelihood(
            model, guide, torch.arange(5, dtype=F64), num_samples=100_000, chunk_size=25_000
        )
    k = est.pareto_k
    assert k.shape == (5,)
    assert torch.allclose(k, 1 - scales.double() ** 2, atol=0.1), k
    # a proposal wider than the target has bounded weights: k < 0
    wide_model, wide_guide = _prior_pair(torch.tensor([1.5]))
    wide = infer.importance_log_likelihood(
        wide_model, wide_guide, torch.zeros(1, dtype=F64), num_samples=5000, chunk_size=5000
    )
    assert wide.pareto_k.item() < 0


def test_pareto_k_matches_arviz_psislw_on_the_same_weights() -> None:
    log_w = torch.randn(2000, 6, dtype=F64) * torch.tensor([0.3, 0.7, 1.0, 1.5, 2.0, 2.5])
    ours = pareto_k(log_w)
    _, theirs = diagnostics.psislw(log_w)
    assert np.allclose(ours.numpy(), theirs, atol=1e-8)
    assert pareto_k(log_w[:, 0]).shape == ()


def test_pareto_k_of_each_point_is_pyros_joint_diagnostic_of_its_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log_w = torch.randn(3000, 4, dtype=F64) * torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=F64)
    ours = pareto_k(log_w)
    for i in range(4):  # Pyro's psis_diagnostic, handed point i's weights as its draws
        monkeypatch.setattr(
            pyro.infer.importance,
            "vectorized_importance_weights",
            lambda *args, i=i, **kwargs: (log_w[:, i].clone(), None, None),
        )
        joint = psis_diagnostic(None, None, num_particles=3000)
        assert math.isclose(ours[i].item(), joint, rel_tol=1e-9, abs_tol=1e-12)


def test_pareto_k_special_values_and_bad_input() -> None:
    assert torch.isnan(pareto_k(torch.randn(49, 3))).all()  # too few draws
    assert pareto_k(torch.zeros(100, 2)).eq(-math.inf).all()  # constant: bounded
    spike = torch.full((1000,), -100.0)
    spike[:3] = 0.0  # three weights carry everything: fewer than 10 in the tail
    assert pareto_k(spike).item() == math.inf
    with pytest.raises(ValueError, match="shape"):
        pareto_k(torch.zeros(10, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        pareto_k(torch.full((100,), math.nan))


def test_heavy_tail_warning_names_the_points() -> None:
    scales = torch.tensor([0.1, 0.95, 0.1, 1.2])  # true k: 0.99, 0.10, 0.99, < 0
    model, guide = _prior_pair(scales)
    # k-hat of a tail this heavy scatters by about 0.1 at K = 10,000: the draws are seeded
    # here, so that the test does not hang on how many numbers were drawn before it
    pyro.set_rng_seed(0)
    with pytest.warns(HeavyTailWarning, match=r"2 of 4 data points .*points \[0, 2\]"):
        est = infer.importance_log_likelihood(
            model, guide, torch.arange(4, dtype=F64), num_samples=10_000, chunk_size=5000
        )
    assert est.heavy_tailed().tolist() == [0, 2]
    summary = diagnostics.summarize_pareto_k(est.pareto_k)
    assert summary["heavy_tailed"] == [0, 2] and sum(summary["counts"].values()) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeavyTailWarning)  # no check asked: no warning
        infer.importance_log_likelihood(
            model, guide, torch.arange(4, dtype=F64), num_samples=200, pareto_k_threshold=None
        )


# -- probabilistic PCA: closed-form marginal likelihood ------------------------------------------
def _ppca(num_points: int = 300, guide_scale: float = 1.0, guide_shift: float = 0.0):
    """Data, sklearn's fitted PCA, and the pPCA model with an exact (or perturbed) guide."""
    gen = torch.Generator().manual_seed(1)
    w_true = torch.randn(5, 2, generator=gen, dtype=F64) * 2
    data = torch.randn(num_points, 2, generator=gen, dtype=F64) @ w_true.T
    data += 0.5 * torch.randn(num_points, 5, generator=gen, dtype=F64) + 1.0
    pca = PCA(n_components=2).fit(data.numpy())
    sigma2 = float(pca.noise_variance_)
    w = torch.as_tensor(pca.components_.T * np.sqrt(pca.explained_variance_ - sigma2))
    mu = torch.as_tensor(pca.mean_)
    m_inv = torch.linalg.inv(w.T @ w + sigma2 * torch.eye(2, dtype=F64))
    post_cov = sigma2 * m_inv

    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=F64), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w.T + mu, math.sqrt(sigma2)).to_event(1), obs=x)

    shift = guide_shift * torch.linalg.cholesky(post_cov).sum(-1)  # in posterior std's

    def guide(x: torch.Tensor) -> None:
        loc = (x - mu) @ w @ m_inv.T + shift
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(loc, guide_scale**2 * post_cov))

    return data, pca, model, guide


def test_exact_guide_recovers_the_ppca_marginal_likelihood() -> None:
    data, pca, model, guide = _ppca()
    est = infer.importance_log_likelihood(model, guide, data, num_samples=64)
    exact = torch.as_tensor(pca.score_samples(data.numpy()))
    assert torch.allclose(est.values, exact, atol=1e-8)  # every weight is p(x_i)
    assert torch.allclose(est.effective_sample_size, torch.full((300,), 64.0, dtype=F64))
    assert torch.allclose(est.bits_per_dim, -exact / (5 * math.log(2)), atol=1e-8)
    assert math.isclose(est.summary().nats, float(pca.score(data.numpy())), abs_tol=1e-8)


def test_importance_estimates_of_a_poor_guide_converge_to_the_ppca_marginal() -> None:
    data, pca, model, guide = _ppca(guide_scale=0.7, guide_shift=0.5)
    exact = torch.as_tensor(pca.score_samples(data.numpy()))
    gaps, ess = [], []
    for k in (1, 50, 2000):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HeavyTailWarning)
            est = infer.importance_log_likelihood(
                model, guide, data, num_samples=k, chunk_size=500
            )
        gaps.append(float((exact - est.values).mean()))
        ess.append(est.effective_sample_size)
    assert gaps[0] > gaps[1] > gaps[2] > -0.005 and gaps[2] < 0.02
    assert (ess[2] < 2000).all() and (ess[2] > 1).all()
    # narrower than the posterior (k = 1 - 0.7^2 = 0.51 unshifted) and shifted: k-hat above 0.5
    assert est.pareto_k.median() > 0.5


# -- ELBO surgery: linear-Gaussian closed form ------------------------------------------------
D, LATENT, SIGMA = 3, 2, 0.5
_G = torch.Generator().manual_seed(3)
W = torch.randn(D, LATENT, generator=_G, dtype=F64)
MU = torch.randn(D, generator=_G, dtype=F64)
A = 0.5 * torch.randn(LATENT, D, generator=_G, dtype=F64)
B = 0.1 * torch.randn(LATENT, generator=_G, dtype=F64)
S = torch.tensor([0.3, 0.5], dtype=F64)  # the guide's scales (not the exact posterior)
COV_X = W @ W.T + SIGMA**2 * torch.eye(D, dtype=F64)


def lg_model(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(LATENT, dtype=F64), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T + MU, SIGMA).to_event(1), obs=x)


def lg_guide(x: torch.Tensor) -> None:
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x @ A.T + B, S).to_event(1))


def _closed_form(x: torch.Tensor) -> dict[str, torch.Tensor | float]:
    """Per point: E_q log p(x|z) and KL(q(z|x) || p(z)); for x ~ N(MU, COV_X): I_q and the
    marginal KL of q_agg = N(A MU + B, A COV_X A^T + diag S^2) to N(0, I)."""
    loc = x @ A.T + B
    resid = x - loc @ W.T - MU
    rec = -0.5 * D * math.log(2 * math.pi * SIGMA**2) - 0.5 / SIGMA**2 * (
        (resid**2).sum(-1) + (W**2 * S**2).sum()
    )
    kl = 0.5 * ((S**2).sum() + (loc**2).sum(-1) - LATENT - torch.log(S**2).sum())
    cov_agg = A @ COV_X @ A.T + torch.diag(S**2)
    mean_agg = A @ MU + B
    mi = 0.5 * (torch.logdet(cov_agg) - torch.log(S**2).sum())
    marginal = 0.5 * (torch.trace(cov_agg) + mean_agg @ mean_agg - LATENT - torch.logdet(cov_agg))
    return {"reconstruction": rec, "kl": kl, "mi": float(mi), "marginal_kl": float(marginal)}


def test_elbo_surgery_matches_the_linear_gaussian_closed_form() -> None:
    x = dist.MultivariateNormal(MU, COV_X).sample((1000,))
    result = diagnostics.elbo_surgery(lg_model, lg_guide, x, num_samples=8, batch_size=300)
    truth = _closed_form(x)
    # the three terms add up to the ELBO, point by point
    p = result.pointwise
    total = p["reconstruction"] - p["mutual_information"] - p["marginal_kl"]
    assert torch.allclose(total, p["elbo"], atol=1e-9)
    assert torch.allclose(p["kl"], p["mutual_information"] + p["marginal_kl"], atol=1e-9)
    # reconstruction and KL of the given points: exact but for the Monte Carlo draws of z
    for term in ("reconstruction", "kl"):
        err = p[term] - truth[term]
        assert abs(float(err.mean())) < 4 * float(err.std()) / math.sqrt(1000) + 1e-9, term
    # the split of the KL: the population's closed form, up to N = 1000's bias and noise
    assert abs(result.mutual_information - truth["mi"]) < 0.06
    assert abs(result.marginal_kl - truth["marginal_kl"]) < 0.12
    assert 0 < result.mutual_information < result.max_mutual_information == math.log(1000)
    assert set(result.to_dict()) >= {"elbo", "mutual_information", "marginal_kl", "stderr"}


def test_q_agg_is_the_mixture_of_all_posteriors() -> None:
    x = dist.MultivariateNormal(MU, COV_X).sample((7,))
    z = torch.randn(5, LATENT, dtype=F64)
    brute = torch.stack(
        [dist.Normal(xj @ A.T + B, S).to_event(1).log_prob(z) for xj in x]
    ).logsumexp(0) - math.log(7)
    ours = _log_q_agg(lg_guide, x, z, "z", batch_size=3, chunk_size=4)
    assert torch.allclose(ours, brute, atol=1e-10)


def test_mutual_information_bias_shrinks_as_the_data_grow() -> None:
    # as an estimate of the population's I_q (data drawn afresh), the empirical q_agg is
    # biased (measured: -0.41, -0.19, -0.06 nats at N = 10, 30, 100; +-0.06, 0.03, 0.02)
    truth = _closed_form(torch.zeros(1, D, dtype=F64))["mi"]
    errors = []
    for n, repeats in ((10, 20), (30, 20), (100, 10)):
        estimates = [
            diagnostics.elbo_surgery(
                lg_model, lg_guide, dist.MultivariateNormal(MU, COV_X).sample((n,)), num_samples=4
            ).mutual_information
            for _ in range(repeats)
        ]
        errors.append(abs(float(np.mean(estimates)) - truth))
        assert max(estimates) <= math.log(n) + 1e-9  # the estimator's ceiling
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.1, errors


def test_a_saturated_mutual_information_is_flagged() -> None:
    def sharp_guide(x: torch.Tensor) -> None:  # posteriors that do not overlap: I_q = log N
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x[:, :LATENT] * 10, 1e-3).to_event(1))

    x = dist.MultivariateNormal(MU, COV_X).sample((50,))
    with pytest.warns(diagnostics.SaturatedMutualInformationWarning, match="ceiling log N"):
        result = diagnostics.elbo_surgery(lg_model, sharp_guide, x)
    assert math.isclose(result.mutual_information, math.log(50), rel_tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", diagnostics.SaturatedMutualInformationWarning)
        diagnostics.elbo_surgery(lg_model, lg_guide, x)  # I_q = 1.5 < 0.9 log 50: no warning


def test_elbo_surgery_on_vaes_and_its_errors() -> None:
    x = torch.randn(40, 4)
    for posterior in ("gaussian", "iaf"):
        pyro.clear_param_store()
        vae = VAE.for_vectors(
            4,
            latent_dim=2,
            hidden_dims=[8],
            prior="flow",
            posterior=posterior,
            prior_layers=1,
            posterior_steps=1,
            flow_hidden_dims=[8],
        )
        result = diagnostics.elbo_surgery(vae.model, vae.guide, x, num_samples=2, batch_size=16)
        elbo = infer.log_likelihood(vae.model, vae.guide, x, num_particles=200).nats
        assert abs(result.elbo - elbo) < 0.1 * abs(elbo)
        assert -1e-6 < result.mutual_information <= math.log(40)
        # q_agg against a loop over each point's posterior
        z = torch.randn(3, 2)
        with torch.no_grad():
            brute = torch.stack(
                [vae.posterior(x[j : j + 1]).log_prob(z[:, None]).squeeze(1) for j in range(40)]
            ).logsumexp(0) - math.log(40)
            ours = _log_q_agg(vae.guide, x, z, "z", batch_size=16, chunk_size=10)
        assert torch.allclose(ours.float(), brute, atol=1e-4)
    pyro.clear_param_store()
    planar = VAE.for_vectors(4, latent_dim=2, hidden_dims=[8], posterior="planar")
    with pytest.raises(ValueError, match="cannot score"):
        diagnostics.elbo_surgery(planar.model, planar.guide, x)
    with pytest.raises(ValueError, match="site"):
        diagnostics.elbo_surgery(lg_model, lg_guide, x[:, :3].double(), site="w")
    with pytest.raises(ValueError, match="at least 2"):
        diagnostics.elbo_surgery(lg_model, lg_guide, x[:1, :3].double())


# -- ArviZ ------------------------------------------------------------------------------
def _scalar_pair(noise: float):
    """z ~ N(0, 1), x | z ~ N(z, noise^2), so p(x) = N(0, 1 + noise^2); guide N(0.3 x, 0.9)."""

    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
            pyro.sample("x", dist.Normal(z, noise), obs=x)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.3 * x, 0.9))

    return model, guide


def test_inference_data_passes_loo_and_compare() -> None:
    az = diagnostics.arviz_module()
    x = torch.randn(150, dtype=F64) * math.sqrt(2.0)
    history = {"epoch": [1, 2], "train_loss": [3.0, 2.0], "validation_loss": [3.5, 2.5]}
    idata = diagnostics.to_inference_data(
        *_scalar_pair(1.0), x, num_samples=4000, num_draws=200, history=history
    )
    assert {"posterior", "log_likelihood", "sample_stats", "observed_data"} <= set(idata.groups())
    assert idata.posterior["z"].shape == (1, 4000, 150)
    assert idata.log_likelihood["x"].shape == (1, 200, 150)
    assert idata.sample_stats["log_weight"].shape == (1, 4000, 150)
    assert idata.sample_stats["pareto_k"].dims == ("obs",)
    assert list(idata.sample_stats["train_elbo"].values) == [-3.0, -2.0]
    assert np.allclose(idata.observed_data["x"].values, x.numpy())
    lw = torch.as_tensor(idata.sample_stats["log_weight"].values[0])
    iwae = (lw.logsumexp(0) - math.log(4000)).sum().item()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no Pareto-k warning from az.loo
        loo = az.loo(idata, pointwise=True)
    assert loo.n_data_points == 150 and not loo.warning
    # ArviZ's lppd is the importance-weighted bound with all K draws; p_loo is small noise
    assert math.isclose(float(loo.elpd_loo + loo.p_loo), iwae, rel_tol=1e-9)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).sum().item()
    assert abs(iwae - exact) < 0.5 and 0 <= float(loo.p_loo) < 5
    wrong = diagnostics.to_inference_data(*_scalar_pair(2.0), x, num_samples=4000, num_draws=200)
    table = az.compare({"right": idata, "wrong": wrong})
    assert list(table.index) == ["right", "wrong"]
    exact_gap = exact - dist.Normal(0.0, math.sqrt(5.0)).log_prob(x).sum().item()
    assert abs(table.loc["wrong", "elpd_diff"] - exact_gap) < 3.0


def test_inference_data_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(10, dtype=F64)
    model, guide = _scalar_pair(1.0)
    with pytest.raises(ValueError, match="multiple of num_draws"):
        diagnostics.to_inference_data(model, guide, x, num_samples=150, num_draws=100)
    with pytest.raises(ValueError, match="no latent site 'w'"):
        diagnostics.to_inference_data(model, guide, x, site="w", num_samples=100, num_draws=10)
    az = diagnostics.arviz_module()
    monkeypatch.setattr(az, "__version__", "1.0.0")
    with pytest.raises(ImportError, match=r"arviz 1\.0\.0"):
        diagnostics.to_inference_data(model, guide, x)


# -- pyro-dgm evaluate ----------------------------------------------------------------------
def _evaluate_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["evaluate", *argv])


def test_evaluate_a_flow_run_reports_its_exact_likelihood(tmp_path, capsys) -> None:
    out = tmp_path / "flow"
    argv = ["fit", "--data", "moons", "--model", "maf", "--epochs", "1", "--num-layers", "1"]
    assert cli.main([*argv, "--hidden", "8", "--out", str(out), "--quiet"]) == 0
    assert evaluate_command(_evaluate_args(str(out), "--max-points", "100")) == 0
    saved = json.loads((out / "diagnostics.json").read_text())
    assert saved["log_likelihood"]["bound"] == "exact" and "pareto_k" not in saved
    assert "log p(x)" in capsys.readouterr().out
    assert evaluate_command(_evaluate_args(str(tmp_path / "nothing"))) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_writes_diagnostics_of_a_fitted_vae(tmp_path) -> None:
    out = tmp_path / "vae"
    argv = ["fit", "--model", "vae", "--data", "digits", "--posterior", "iaf", "--epochs", "1"]
    argv += ["--num-layers", "1", "--hidden", "16", "--num-samples", "4", "--quiet"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["evaluate", str(out), "--num-samples", "200", "--num-draws", "20", "--max-points", "40"]
    )
    report = run_evaluate(args)
    saved = json.loads((out / "diagnostics.json").read_text())
    assert saved["num_points"] == 40 and saved["log_likelihood"]["bound"] == "IWAE(K=200)"
    fit_nll = json.loads((out / "metrics.json").read_text())["test_nll_nats"]
    assert abs(-saved["log_likelihood"]["nats"] - fit_nll) < 15  # same model, 40 of the points
    assert 0 < saved["log_likelihood"]["bits_per_dim"] < 10
    assert sum(saved["pareto_k"]["counts"].values()) + saved["pareto_k"]["undefined"] == 40
    surgery = saved["elbo_surgery"]
    assert math.isclose(
        surgery["elbo"],
        surgery["reconstruction"] - surgery["mutual_information"] - surgery["marginal_kl"],
        abs_tol=1e-6,
    )
    assert saved["elbo_surgery_split"] == "train" and surgery["num_points"] == 40
    assert math.isclose(saved["loo"]["lppd"], 40 * saved["log_likelihood"]["nats"], rel_tol=1e-6)
    for figure in ("pareto_k.png", "elbo_surgery.png", "latent_scatter.png"):
        assert figure in report["figures"]
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="metrics.json"):
        run_evaluate(parser.parse_args(["evaluate", str(tmp_path / "missing")]))
