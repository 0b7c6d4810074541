"""The pyro-dgm command-line tool writes a complete report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pyro_dgm import cli


def test_fit_writes_a_report(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["fit", "--data", "moons", "--model", "maf", "--epochs", "2", "--num-layers", "1"]
    code = cli.main([*argv, "--hidden", "8", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == "moons" and metrics["model"] == "maf"
    assert metrics["bound"] == "exact" and math.isfinite(metrics["test_nll_nats"])
    assert metrics["epochs_run"] == 2 and metrics["num_test"] > 0
    assert metrics["data_entropy_nats"] > 0 and "torch" in metrics["versions"]
    for figure in ("training_curve.png", "density.png"):
        assert figure in metrics["figures"]
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "checkpoint.pt").exists()
    assert "test NLL" in capsys.readouterr().out


def test_unknown_data_is_a_clear_error(tmp_path, capsys) -> None:
    code = cli.main(["fit", "--data", "nope", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "moons" in err


def test_unknown_model_is_rejected_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        cli.main(["fit", "--model", "nope"])


def test_fit_digits_with_dequantization_reports_bits_per_dim(tmp_path) -> None:
    out = tmp_path / "digits"
    argv = ["fit", "--data", "digits", "--model", "realnvp", "--dequantization", "variational"]
    argv += ["--epochs", "1", "--num-layers", "1", "--hidden", "16", "--num-samples", "4"]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dequantization"] == "variational" and metrics["bound"] == "IWAE(K=4)"
    assert set(metrics["bounds"]) == {"ELBO(particles=10)", "IWAE(K=4)"}
    assert 0 < metrics["test_bits_per_dim"] < 20
    assert (out / "samples.png").exists()


@pytest.mark.parametrize("model", ["glow", "realnvp"])
@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_fit_digits_with_the_multiscale_image_flows(tmp_path, model, dequantization) -> None:
    """On image data, glow and realnvp are the multi-scale image flows (not vector flows)."""
    out = tmp_path / model
    argv = ["fit", "--data", "digits", "--model", model, "--dequantization", dequantization]
    argv += ["--epochs", "1", "--num-layers", "2", "--hidden", "8", "--num-samples", "4"]
    assert cli.main([*argv, "--levels", "2", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dequantization"] == dequantization and metrics["bound"] == "IWAE(K=4)"
    assert 0 < metrics["test_bits_per_dim"] < 20
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    names = " ".join(state["params"]) if "params" in state else " ".join(map(str, state))
    assert "levels" in names  # the multi-scale flow's parameters were saved
    assert (out / "samples.png").exists()
    # model.pt holds the whole pair, buffers included, and reloads into a rebuilt pair
    config = cli.RunConfig.from_dict(metrics["config"])
    _, rebuilt = cli.build_pair(config, cli.datasets.load("digits"))
    state = torch.load(out / "model.pt", weights_only=True)
    assert any(key.endswith("initialized") for key in state)  # ActNorm's flag
    rebuilt.load_state_dict(state)
    nll = -rebuilt.log_likelihood(cli.datasets.load("digits").test[:20]).nats
    assert math.isfinite(nll)


def test_dequantization_of_continuous_data_is_an_error(tmp_path, capsys) -> None:
    argv = ["fit", "--data", "moons", "--dequantization", "uniform", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "continuous" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, bound_prefix",
    [
        (["--data", "digits", "--prior", "flow", "--posterior", "iaf"], "IWAE"),
        (["--data", "digits", "--likelihood", "bernoulli"], "IWAE"),
        (["--data", "moons", "--latent-dim", "1"], "IWAE"),
    ],
    ids=["digits-flow-iaf", "digits-binarized", "moons"],
)
def test_fit_vae_reports_the_importance_weighted_bound(tmp_path, extra, bound_prefix) -> None:
    out = tmp_path / "vae"
    argv = ["fit", "--model", "vae", *extra, "--epochs", "1", "--num-layers", "1"]
    argv += ["--hidden", "16", "--num-samples", "5", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bound"].startswith(bound_prefix) and metrics["vae"] is not None
    assert any(name.startswith("ELBO") for name in metrics["bounds"])
    assert math.isfinite(metrics["test_nll_nats"])
    assert (out / "samples.png").exists()


def test_vae_with_dequantization_is_an_error(tmp_path, capsys) -> None:
    argv = ["fit", "--model", "vae", "--data", "digits", "--dequantization", "uniform"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 2
    assert "likelihood" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "data"), [("pixelcnn", "digits"), ("wavenet", "digit_sequences")]
)
def test_fit_autoregressive_models_report_exact_bits_per_dim(tmp_path, model, data) -> None:
    out = tmp_path / model
    argv = ["fit", "--data", data, "--model", model, "--epochs", "1", "--hidden", "8"]
    assert cli.main([*argv, "--num-layers", "2", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bound"] == "exact" and metrics["dequantization"] is None
    assert 0 < metrics["test_bits_per_dim"] < 20
    assert (out / "samples.png").exists()


def test_autoregressive_models_refuse_dequantization(tmp_path, capsys) -> None:
    argv = ["fit", "--data", "digits", "--model", "pixelcnn", "--dequantization", "uniform"]
    assert cli.main([*argv, "--out", str(tmp_path), "--quiet"]) == 2
    assert "models the integers exactly" in capsys.readouterr().err
