r"""``pyro-dgm evaluate RUN_DIR``: the diagnostics of a fitted run, written into its folder.

.. code-block:: console

    $ pyro-dgm fit --data digits --model vae --prior flow --posterior iaf --out runs/vae
    $ pyro-dgm evaluate runs/vae

Rebuilds the model/guide pair from ``RUN_DIR/config.json``, loads ``model.pt`` and
``checkpoint.pt`` (a run interrupted by Ctrl-C is read at the end of its last
complete epoch), and writes ``diagnostics.json`` with the importance-weighted
log-likelihood (nats, bits/dim), the per-point effective sample size and PSIS
:math:`\hat k`, ELBO surgery, the active latent units of a VAE (Burda et al.'s criterion;
a :class:`~pyro_dgm.diagnostics.PosteriorCollapseWarning` when none is active or the KL is
near zero), ArviZ's PSIS-LOO and, for discrete data, the bits per dimension that
compressing the points with the model writes (:func:`~pyro_dgm.cli.compress.code_length`),
plus ``pareto_k.png``,
``elbo_surgery.png`` and ``latent_scatter.png`` (a VAE with labelled data). Every
file is written atomically. A conditional run is scored given the labels,
:math:`\log p(x \mid c)`; ELBO surgery and PSIS-LOO, which take unconditional pairs,
say that they are not available for it.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from torch import Tensor

from .. import plots
from ..diagnostics import (
    SaturatedMutualInformationWarning,
    arviz_module,
    collapse_report,
    elbo_surgery,
    pointwise_to_inference_data,
    summarize_pareto_k,
)
from ..diagnostics.arviz import observed_site
from ..infer import HeavyTailWarning, importance_log_likelihood
from ..infer.traces import sample_sites
from ..utils.checks import check_int
from .build import split_args
from .compress import code_length
from .errors import report_error
from .runs import (
    DIAGNOSTICS_FILE,
    INFERENCE_DATA_FILE,
    load_run,
    save_figure,
    save_with,
    write_json,
)

__all__ = ["add_evaluate_parser", "evaluate_command", "run_evaluate"]


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command to the ``pyro-dgm`` sub-command parsers.

    Example:
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> sub = add_evaluate_parser(parser.add_subparsers(dest="command"))
        >>> parser.parse_args(["evaluate", "runs/moons-spline", "--num-samples", "500"]).num_samples
        500
    """
    parser = subparsers.add_parser(
        "evaluate",
        help="diagnostics of a fitted run: log-likelihood, PSIS k-hat, ELBO surgery, LOO",
        description=(
            "Write diagnostics.json and figures into RUN_DIR (made by pyro-dgm fit): the "
            "importance-weighted log-likelihood, per-point PSIS k-hat and ESS, ELBO surgery "
            "and ArviZ's PSIS-LOO for models with a latent site. A run interrupted by Ctrl-C "
            "is evaluated at the end of its last complete epoch."
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
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="skip compressing the points (by default a discrete-data run reports the bits/dim "
        "its codec writes, beside the bits/dim of the likelihood)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.set_defaults(handler=evaluate_command)
    return parser


def _latent_site(pair: Any, batch: tuple[Tensor, ...]) -> str | None:
    with torch.no_grad(), poutine.block():
        sites = list(sample_sites(poutine.trace(pair.guide).get_trace(*batch)))
    if "z" in sites:
        return "z"
    return sites[0] if len(sites) == 1 else None


def _pca_2d(z: Tensor) -> tuple[Tensor, tuple[str, str]]:
    if z.shape[1] == 2:
        return z, ("z[0]", "z[1]")
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    share = (s**2 / (s**2).sum())[:2].tolist()
    names = [f"PC{i + 1} of z ({100 * p:.0f}%)" for i, p in enumerate(share)]
    return centred @ v[:2].T, (names[0], names[1])


def _figures(
    run_dir: Path, report: dict[str, Any], pointwise: Any, latent: Any, labels: Any, title: str
) -> list[str]:
    figures = {}
    if "pareto_k" in report:
        figures["pareto_k.png"] = plots.pareto_k_figure(
            pointwise.pareto_k, title=f"{title}: PSIS k-hat per point"
        )
    surgery = report.get("elbo_surgery")
    if isinstance(surgery, dict) and "elbo" in surgery:
        figures["elbo_surgery.png"] = plots.elbo_surgery_figure(
            {title: surgery},
            terms=("kl", "mutual_information", "marginal_kl"),
            title="ELBO surgery",
        )
    if latent is not None and latent.dim() == 2 and latent.shape[1] >= 2:
        points, names = _pca_2d(latent.double())
        figures["latent_scatter.png"] = plots.latent_scatter_figure(
            points, labels, axis_labels=names, title=f"{title}: posterior means"
        )
    for name, fig in figures.items():
        save_figure(fig, run_dir / name)
    return list(figures)


def _check_args(args: argparse.Namespace) -> None:
    for name in ("num_samples", "num_draws", "surgery_samples"):
        check_int(getattr(args, name), f"--{name.replace('_', '-')}", 1)
    for name in ("max_points", "threads"):
        if getattr(args, name, None) is not None:
            check_int(getattr(args, name), f"--{name.replace('_', '-')}", 1)


def _parameters_epoch(history: Any, complete: bool) -> int:
    """The epoch whose parameters the checkpoint holds: the best one of a complete run
    (fit restores it), the last complete one of an interrupted run (0: none)."""
    if history is None or not history.epoch:
        return 0
    return (history.best_epoch or history.epoch[-1]) if complete else history.epoch[-1]


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``pyro-dgm evaluate``: write ``diagnostics.json`` and figures into
    ``args.run_dir`` and return what was written.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from pyro_dgm.cli.config import RunConfig
        >>> from pyro_dgm.cli.fit import fit_run
        >>> out = Path(tempfile.mkdtemp()) / "moons-maf"  # a one-epoch run of a small flow
        >>> config = RunConfig(data="moons", model="maf", epochs=1, num_layers=1, hidden=8, device="cpu")
        >>> _ = fit_run(config, out, progress=False)
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> _ = add_evaluate_parser(parser.add_subparsers(dest="command"))
        >>> report = run_evaluate(parser.parse_args(["evaluate", str(out)]))
        >>> (out / "diagnostics.json").is_file()
        True
    """
    _check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    run = load_run(run_dir)
    data, pair, config = run.data, run.pair, run.config
    pair.eval()  # scored and sampled as the bijection it is: no dropout (nothing trains here)
    history = run.checkpoint.history if run.checkpoint is not None else None
    pyro.set_rng_seed(args.seed)
    inputs = split_args(data, args.split, args.max_points)  # (x,) or (x, context)
    points = inputs[0]
    labels = getattr(data, f"{args.split}_labels", None)
    if args.max_points is not None:
        labels = None if labels is None else labels[: args.max_points]
    site = _latent_site(pair, tuple(a[:1] for a in inputs))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HeavyTailWarning)
        pointwise = importance_log_likelihood(
            pair.model,
            pair.guide,
            inputs,
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
        "run_complete": run.complete,
        # a complete run keeps its best epoch's parameters; an interrupted one its last
        "parameters_of_epoch": _parameters_epoch(history, run.complete),
        "split": args.split,
        "conditional": config.conditional,
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
    if not getattr(args, "no_compression", False):  # the size a real file has, beside bits/dim
        report["compression"] = code_length(pair, inputs, data.num_levels)
    latent = None
    unconditional_only = "not available: it takes an unconditional pair; this run is conditional"
    if site is not None and not exact and config.conditional:
        report["elbo_surgery"] = report["loo"] = unconditional_only
        draws = pointwise.samples[site]
        latent = draws.double().mean(0) if draws.dim() == 3 else None
    elif site is not None and not exact:
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
                save_with(
                    run_dir / INFERENCE_DATA_FILE,
                    lambda tmp: idata.to_netcdf(str(tmp)),
                    suffix=".nc",
                )
                report["inference_data"] = INFERENCE_DATA_FILE
            except (ImportError, ValueError, TypeError, OSError) as error:
                report["inference_data"] = f"not written: {error}"
        except (ImportError, ValueError) as error:
            report["loo"] = f"not available: {error}"
        report["seconds"]["arviz"] = time.perf_counter() - start
    if config.model == "vae":
        report["active_units"], report["posterior_collapse"] = collapse_report(pair, *inputs)
    title = config.model
    if config.model == "vae":
        title += f" ({config.prior} prior, {config.posterior} posterior)"
    report["figures"] = _figures(run_dir, report, pointwise, latent, labels, title)
    write_json(run_dir / DIAGNOSTICS_FILE, report)
    return report


def evaluate_command(args: argparse.Namespace) -> int:
    """``pyro-dgm evaluate``: run, print a one-line summary, return the exit status
    (errors print one ``pyro-dgm: error:`` line and return 2).

    Example:
        >>> parser = argparse.ArgumentParser(prog="pyro-dgm")
        >>> _ = add_evaluate_parser(parser.add_subparsers(dest="command"))
        >>> evaluate_command(parser.parse_args(["evaluate", "/no/such/run"]))  # an error line
        2
    """
    try:
        report = run_evaluate(args)
    except (ValueError, OSError, RuntimeError) as error:
        return report_error(error)
    ll = report["log_likelihood"]
    line = f"log p(x) = {ll['nats']:.4f} ± {ll['stderr']:.4f} nats ({ll['bound']})"
    if ll["bits_per_dim"] is not None:
        line += f", {ll['bits_per_dim']:.4f} bits/dim"
    written = report.get("compression")
    if isinstance(written, dict):
        line += (
            f"; compressed: {written['bits_per_dim_written']:.4f} bits/dim written "
            f"(round trip {'exact' if written['round_trip'] else 'FAILED'})"
        )
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
    units = report.get("active_units")
    if units is not None:
        line += f"; active units {units['count']} of {units['latent_dim']}"
        line += " (POSTERIOR COLLAPSE)" if report["posterior_collapse"] else ""
    if not report["run_complete"]:
        line += f" (an interrupted run, at epoch {report['parameters_of_epoch']})"
    print(f"{line}; report in {report['run_dir']}/diagnostics.json")
    return 0 if math.isfinite(ll["nats"]) else 1
