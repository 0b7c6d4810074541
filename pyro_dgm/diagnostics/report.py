r"""``pyro-dgm evaluate RUN_DIR``: the diagnostics of a fitted run, written into its folder.

.. code-block:: console

    $ pyro-dgm fit --data digits --model vae --prior flow --posterior iaf --out runs/vae
    $ pyro-dgm evaluate runs/vae

Reads ``RUN_DIR/metrics.json`` (whose ``config`` is the namespace of the fit) and
``RUN_DIR/checkpoint.pt``, rebuilds the model/guide pair, and writes
``diagnostics.json`` with the importance-weighted log-likelihood (nats, bits/dim),
the per-point effective sample size and PSIS :math:`\hat k`, ELBO surgery and
ArviZ's PSIS-LOO, plus ``pareto_k.png``, ``elbo_surgery.png`` and
``latent_scatter.png`` (a VAE with labelled data).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import Tensor

from ..infer import importance_log_likelihood, load_checkpoint
from ..infer.metrics import HeavyTailWarning
from ..infer.traces import sample_sites
from .arviz import arviz_module, observed_site, pointwise_to_inference_data
from .pareto import summarize_pareto_k
from .surgery import SaturatedMutualInformationWarning, elbo_surgery

__all__ = ["add_evaluate_parser", "evaluate_command", "run_evaluate"]


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command to the ``pyro-dgm`` sub-command parsers."""
    parser = subparsers.add_parser(
        "evaluate",
        help="diagnostics of a fitted run: log-likelihood, PSIS k-hat, ELBO surgery, LOO",
        description=(
            "Write diagnostics.json and figures into RUN_DIR (made by pyro-dgm fit): the "
            "importance-weighted log-likelihood, per-point PSIS k-hat and ESS, ELBO surgery "
            "and ArviZ's PSIS-LOO for models with a latent site."
        ),
    )
    parser.add_argument("run_dir", type=Path, help="a folder written by pyro-dgm fit")
    parser.add_argument(
        "--split", choices=["test", "validation", "train"], default="test", help="data points"
    )
    parser.add_argument("--num-samples", type=int, default=2000, help="K guide draws per point")
    parser.add_argument(
        "--num-draws", type=int, default=200, help="block estimates per point for ArviZ's LOO"
    )
    parser.add_argument(
        "--surgery-split",
        choices=["train", "validation", "test"],
        default="train",
        help="the points of ELBO surgery (default train, as Hoffman & Johnson: the mutual "
        "information estimate cannot exceed log N)",
    )
    parser.add_argument(
        "--surgery-samples", type=int, default=1, help="guide draws per point for ELBO surgery"
    )
    parser.add_argument(
        "--max-points", type=int, default=None, help="evaluate the first N points of each split"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.set_defaults(handler=evaluate_command)
    return parser


def _load_pair(run_dir: Path) -> tuple[dict[str, Any], Any, Any, Any]:
    """The run's metrics, data set, model/guide pair (with its trained parameters) and
    training history."""
    from .. import cli, datasets  # cli imports this module's package: import it late

    metrics_file, checkpoint = run_dir / "metrics.json", run_dir / "checkpoint.pt"
    for file in (metrics_file, checkpoint):
        if not file.exists():
            raise ValueError(f"run_dir: {file} does not exist (expected a pyro-dgm fit folder)")
    metrics = json.loads(metrics_file.read_text())
    if "config" not in metrics:
        raise ValueError(f"{metrics_file} has no 'config' (written by an older pyro-dgm fit?)")
    config = argparse.Namespace(**metrics["config"])
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)  # as fit did: the same random buffers (1x1 permutations)
    data, pair = cli._build_pair(config, datasets.load(config.data))
    # create the parameters as fit did (the pair's first pass), then overwrite them
    with torch.no_grad(), poutine.trace(param_only=True) as tape:
        Trace_ELBO().loss(pair.model, pair.guide, data.train[: config.batch_size])
    named = {n: s["value"].unconstrained() for n, s in tape.trace.nodes.items()}
    saved = load_checkpoint(checkpoint, params=named)
    model_file = run_dir / "model.pt"
    if model_file.exists():  # the pair's whole state: buffers too (ActNorm flags, permutations)
        pair.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    return metrics, data, pair, saved.history


def _latent_site(pair: Any, batch: Tensor) -> str | None:
    with torch.no_grad(), poutine.block():
        sites = list(sample_sites(poutine.trace(pair.guide).get_trace(batch)))
    if "z" in sites:
        return "z"
    return sites[0] if len(sites) == 1 else None


def _pca_2d(z: Tensor) -> tuple[Tensor, list[str]]:
    if z.shape[1] == 2:
        return z, ["z[0]", "z[1]"]
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    share = (s**2 / (s**2).sum())[:2].tolist()
    return centred @ v[:2].T, [f"PC{i + 1} of z ({100 * p:.0f}%)" for i, p in enumerate(share)]


def _figures(
    run_dir: Path, report: dict[str, Any], pointwise: Any, latent: Any, labels: Any, title: str
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plots

    written = []
    if "pareto_k" in report:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        plots.pareto_k(pointwise.pareto_k, ax=ax, title=f"{title}: PSIS k-hat per point")
        fig.tight_layout()
        fig.savefig(run_dir / "pareto_k.png", dpi=120)
        plt.close(fig)
        written.append("pareto_k.png")
    surgery = report.get("elbo_surgery")
    if isinstance(surgery, dict) and "elbo" in surgery:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        plots.elbo_surgery_bars(
            {title: surgery},
            terms=("kl", "mutual_information", "marginal_kl"),
            ax=ax,
            title="ELBO surgery",
        )
        fig.tight_layout()
        fig.savefig(run_dir / "elbo_surgery.png", dpi=120)
        plt.close(fig)
        written.append("elbo_surgery.png")
    if latent is not None and latent.dim() == 2 and latent.shape[1] >= 2:
        points, names = _pca_2d(latent.double())
        fig, ax = plt.subplots(figsize=(5, 4.5))
        plots.latent_scatter(points, labels, ax=ax, title=f"{title}: posterior means")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        fig.tight_layout()
        fig.savefig(run_dir / "latent_scatter.png", dpi=120)
        plt.close(fig)
        written.append("latent_scatter.png")
    return written


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``pyro-dgm evaluate``: write ``diagnostics.json`` and figures into
    ``args.run_dir`` and return what was written."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    metrics, data, pair, history = _load_pair(run_dir)
    pyro.set_rng_seed(args.seed)
    points = getattr(data, args.split)
    labels = getattr(data, f"{args.split}_labels", None)
    if args.max_points is not None:
        points = points[: args.max_points]
        labels = None if labels is None else labels[: args.max_points]
    site = _latent_site(pair, points[:1])
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HeavyTailWarning)
        pointwise = importance_log_likelihood(
            pair.model,
            pair.guide,
            points,
            num_samples=args.num_samples,
            sites=(site,) if site else (),
        )
    for warning in caught:  # re-raise what is not ours; ours goes into the report
        if not issubclass(warning.category, HeavyTailWarning):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    summary = pointwise.summary()
    report: dict[str, Any] = {
        "command": "evaluate",
        "run_dir": str(run_dir),
        "split": args.split,
        "num_points": len(points),
        "log_likelihood": {
            "nats": summary.nats,
            "stderr": summary.stderr,
            "bound": summary.bound,
            "bits_per_dim": summary.bits_per_dim if data.num_levels is not None else None,
        },
        "seconds": {},
    }
    exact = pointwise.bound == "exact"
    if not exact:
        ess = pointwise.effective_sample_size
        report["ess"] = {
            "median": float(ess.median()),
            "min": float(ess.min()),
            "num_samples": args.num_samples,
        }
        report["pareto_k"] = summarize_pareto_k(pointwise.pareto_k)
        report["heavy_tail_warning"] = [
            str(w.message) for w in caught if issubclass(w.category, HeavyTailWarning)
        ]
    report["seconds"]["log_likelihood"] = time.perf_counter() - start
    latent = None
    if site is not None and not exact:
        start = time.perf_counter()
        try:
            surgery_points = getattr(data, args.surgery_split)[: args.max_points]
            with warnings.catch_warnings():  # the report's "saturated" says it
                warnings.simplefilter("ignore", SaturatedMutualInformationWarning)
                surgery = elbo_surgery(
                    pair.model,
                    pair.guide,
                    surgery_points,
                    site=site,
                    num_samples=args.surgery_samples,
                )
            report["elbo_surgery_split"] = args.surgery_split
            report["elbo_surgery"] = surgery.to_dict()
        except ValueError as error:
            report["elbo_surgery"] = f"not available: {error}"
        report["seconds"]["elbo_surgery"] = time.perf_counter() - start
        draws = pointwise.samples[site]
        latent = draws.double().mean(0) if draws.dim() == 3 else None
        start = time.perf_counter()
        try:
            az = arviz_module()
            idata = pointwise_to_inference_data(
                pointwise,
                points,
                site=site,
                observed_name=observed_site(pair.model, pair.guide, points[:1]),
                num_draws=args.num_draws,
                history=history,
            )
            with warnings.catch_warnings(record=True) as loo_warnings:
                warnings.simplefilter("always")
                loo = az.loo(idata)
            report["loo"] = {
                "elpd_loo": float(loo.elpd_loo),
                "se": float(loo.se),
                "p_loo": float(loo.p_loo),
                "lppd": float(loo.elpd_loo + loo.p_loo),
                "warning": bool(loo.warning),
                "messages": sorted({str(w.message)[:200] for w in loo_warnings}),
            }
            try:
                idata.to_netcdf(str(run_dir / "inference_data.nc"))
                report["inference_data"] = "inference_data.nc"
            except (ImportError, ValueError, TypeError, OSError) as error:
                report["inference_data"] = f"not written: {error}"
        except (ImportError, ValueError) as error:
            report["loo"] = f"not available: {error}"
        report["seconds"]["arviz"] = time.perf_counter() - start
    title = metrics.get("model", "model")
    if metrics.get("vae"):
        title += f" ({metrics['vae']['prior']} prior, {metrics['vae']['posterior']} posterior)"
    report["figures"] = _figures(run_dir, report, pointwise, latent, labels, title)
    (run_dir / "diagnostics.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def evaluate_command(args: argparse.Namespace) -> int:
    """``pyro-dgm evaluate``: run, print a one-line summary, return the exit status."""
    try:
        report = run_evaluate(args)
    except ValueError as error:
        print(f"pyro-dgm: error: {error}", file=sys.stderr)
        return 2
    ll = report["log_likelihood"]
    line = f"log p(x) = {ll['nats']:.4f} ± {ll['stderr']:.4f} nats ({ll['bound']})"
    if ll["bits_per_dim"] is not None:
        line += f", {ll['bits_per_dim']:.4f} bits/dim"
    if "pareto_k" in report:
        k = report["pareto_k"]
        line += f"; k-hat > 0.7 at {len(k['heavy_tailed'])} of {k['num_points']} points"
    surgery = report.get("elbo_surgery")
    if isinstance(surgery, dict):
        line += (
            f"; ELBO surgery on {report['elbo_surgery_split']}: MI "
            f"{surgery['mutual_information']:.3f}, marginal KL {surgery['marginal_kl']:.3f} nats"
            f"{' (saturated: MI near log N)' if surgery['saturated'] else ''}"
        )
    print(f"{line}; report in {report['run_dir']}/diagnostics.json")
    return 0 if math.isfinite(ll["nats"]) else 1
