"""``pyro-dgm compress`` / ``decompress`` and the code length of ``pyro-dgm evaluate``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from pyro_dgm import cli, compression, datasets, infer
from pyro_dgm.cli.runs import load_run

pytest.importorskip("constriction")  # the compress extra (installed by the test extra)

TINY = ["--epochs", "1", "--num-layers", "1", "--hidden", "8", "--batch-size", "2000", "--quiet"]


def _fit(out, model: str, *extra: str, seed: int = 0) -> None:
    argv = ["fit", "--data", "digits", "--model", model, *TINY, *extra, "--seed", str(seed)]
    assert cli.main([*argv, "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny one-epoch runs on digits: PixelCNN (two seeds), a VAE, a conditional PixelCNN,
    a dequantized image flow; and 20 test images (int64) with their labels as .npy."""
    root = tmp_path_factory.mktemp("codec")
    _fit(root / "pixelcnn", "pixelcnn")
    _fit(root / "pixelcnn-other", "pixelcnn", seed=1)
    _fit(root / "vae", "vae", "--latent-dim", "2", "--num-samples", "4")
    _fit(root / "conditional", "pixelcnn", "--conditional")
    _fit(root / "glow", "glow", "--num-samples", "4")
    digits = datasets.digits()
    np.save(root / "x.npy", digits.test[:20].numpy().astype(np.int64))
    np.save(root / "y.npy", digits.test_labels[:20].numpy().astype(np.int64))
    return root


def _round_trip(root, run: str, tmp_path, *labels: str) -> bytes:
    packed, back = tmp_path / "x.pdgm", tmp_path / "back.npy"
    assert cli.main(["compress", str(root / run), str(root / "x.npy"), str(packed), *labels]) == 0
    assert cli.main(["decompress", str(root / run), str(packed), str(back), *labels]) == 0
    x, restored = np.load(root / "x.npy"), np.load(back)
    assert restored.dtype == x.dtype and restored.shape == x.shape
    assert np.array_equal(restored, x)
    return packed.read_bytes()


@pytest.mark.parametrize("run", ["pixelcnn", "vae"])
def test_a_run_compresses_and_decompresses_exactly(runs, run, tmp_path, capsys) -> None:
    data = _round_trip(runs, run, tmp_path)
    out = capsys.readouterr().out
    assert f"20 data points in {len(data)} bytes" in out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_file_is_about_minus_log2_p_of_the_data(runs, tmp_path) -> None:
    """An exact model writes the data's -log2 p(x) bits, computed independently by the
    likelihood helper, to within the coder's few words and the quantization."""
    data = _round_trip(runs, "pixelcnn", tmp_path)
    run = load_run(runs / "pixelcnn")
    x = np.load(runs / "x.npy")
    with torch.no_grad():
        ll = infer.log_likelihood(run.pair.model, run.pair.guide, torch.from_numpy(x).float())
    assert ll.bound == "exact"
    total_bits = -ll.nats * len(x) / np.log(2)  # nats per point -> bits of the set
    header = compression.read_header(data).size
    assert 8 * (len(data) - header) == pytest.approx(total_bits, rel=0.01, abs=64)


def test_a_conditional_run_codes_given_the_labels(runs, tmp_path, capsys) -> None:
    labels = ["--labels", str(runs / "y.npy")]
    data = _round_trip(runs, "conditional", tmp_path, *labels)
    # other labels: the context checksum refuses the file, never wrong pixels
    other = np.load(runs / "y.npy")
    np.save(tmp_path / "other.npy", (other + 1) % 10)
    (tmp_path / "x2.pdgm").write_bytes(data)
    argv = ["decompress", str(runs / "conditional"), str(tmp_path / "x2.pdgm")]
    capsys.readouterr()
    assert cli.main([*argv, str(tmp_path / "o.npy"), "--labels", str(tmp_path / "other.npy")]) == 2
    assert capsys.readouterr().err.startswith("pyro-dgm: error: ")
    assert not (tmp_path / "o.npy").exists()
    assert cli.main([*argv, str(tmp_path / "o.npy")]) == 2  # labels missing
    assert "--labels: the run is conditional" in capsys.readouterr().err


def test_decompressing_with_another_run_is_refused(runs, tmp_path, capsys) -> None:
    packed = tmp_path / "x.pdgm"
    assert cli.main(["compress", str(runs / "pixelcnn"), str(runs / "x.npy"), str(packed)]) == 0
    capsys.readouterr()
    for other in ("pixelcnn-other", "vae"):
        out = tmp_path / f"{other}.npy"
        assert cli.main(["decompress", str(runs / other), str(packed), str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pyro-dgm: error: ") and len(err.strip().splitlines()) == 1
        assert not out.exists()


@pytest.mark.parametrize(
    "setup, match",
    [
        ("float", "expected an integer numpy array"),
        ("shape", r"expected an array of shape \(N, 1, 8, 8\)"),
        ("levels", r"expected integers in \{0, ..., 16\}"),
        ("pickle", "is not an .npy array"),
        ("exists", "exists; pass --overwrite"),
        ("glow", "UniformDequantization"),
        ("labels", "--labels: the run is unconditional"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(
    runs, tmp_path, capsys, setup, match
) -> None:
    x = np.load(runs / "x.npy")
    source, run, extra = tmp_path / "in.npy", "pixelcnn", []
    output = tmp_path / "out.pdgm"
    if setup == "float":
        np.save(source, x.astype(np.float32))
    elif setup == "shape":
        np.save(source, x[:, 0])
    elif setup == "levels":
        np.save(source, x + 1)
    elif setup == "pickle":
        np.save(source, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(source, x)
    if setup == "exists":
        output.write_bytes(b"keep")
    if setup == "glow":
        run = "glow"
    if setup == "labels":
        extra = ["--labels", str(runs / "y.npy")]
    assert cli.main(["compress", str(runs / run), str(source), str(output), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyro-dgm: error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(match, err), err
    assert (output.read_bytes() == b"keep") if setup == "exists" else not output.exists()


def test_overwrite_replaces_the_output(runs, tmp_path) -> None:
    output = tmp_path / "out.pdgm"
    output.write_bytes(b"old")
    argv = ["compress", str(runs / "pixelcnn"), str(runs / "x.npy"), str(output)]
    assert cli.main([*argv, "--overwrite"]) == 0
    assert output.read_bytes()[:4] == b"PDGM"


def test_decompressing_a_file_that_is_not_ours(runs, tmp_path, capsys) -> None:
    argv = ["decompress", str(runs / "pixelcnn"), str(runs / "x.npy"), str(tmp_path / "o.npy")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "input: " in err and "not a pyro_dgm compressed file" in err


@pytest.mark.parametrize("run", ["pixelcnn", "vae"])
def test_evaluate_reports_the_code_length_beside_the_bits_per_dim(runs, run, capsys) -> None:
    assert cli.main(["evaluate", str(runs / run), "--max-points", "20", "--num-samples", "4"]) == 0
    assert "bits/dim written (round trip exact)" in capsys.readouterr().out
    report = json.loads((runs / run / "diagnostics.json").read_text())
    written, ll = report["compression"], report["log_likelihood"]
    assert written["round_trip"] is True
    if run == "pixelcnn":  # an exact model: the file's bits are the likelihood's
        assert written["bits_per_dim_written"] == pytest.approx(ll["bits_per_dim"], rel=0.01)
    else:  # bits-back: near the negative ELBO, above the IWAE bound less the initial bits
        assert written["net_bits_per_dim"] > 0.9 * ll["bits_per_dim"]
    assert written["bits_per_dim_with_header"] > written["bits_per_dim_written"]


def test_evaluate_says_why_a_run_cannot_be_compressed(runs, tmp_path, capsys) -> None:
    argv = ["evaluate", str(runs / "glow"), "--max-points", "10", "--num-samples", "4"]
    assert cli.main(argv) == 0
    report = json.loads((runs / "glow" / "diagnostics.json").read_text())
    assert report["compression"].startswith("not available: model: UniformDequantization")
    assert cli.main([*argv, "--no-compression"]) == 0
    assert "compression" not in json.loads((runs / "glow" / "diagnostics.json").read_text())
