r"""The ``pyro-dgm`` command-line tool: fit a model to an embedded data set and write its
report; evaluate a fitted run with the diagnostics.

.. code-block:: console

    $ pyro-dgm fit --data moons --model spline
    $ pyro-dgm fit --data rings --model maf --epochs 50 --out runs/rings
    $ pyro-dgm evaluate runs/rings      # diagnostics (k-hat, ELBO surgery, ArviZ) into the report
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from . import __version__, datasets, flows, image_flows, infer, models
from .diagnostics.report import add_evaluate_parser, evaluate_command
from .models import FlowModel
from .utils.zuko_import import import_zuko

zuko = import_zuko()

__all__ = ["FLOW_BUILDERS", "IMAGE_FLOW_BUILDERS", "main", "run_fit"]

FLOW_BUILDERS: dict[str, Callable[[int, argparse.Namespace], flows.Flow]] = {
    "maf": lambda dim, a: flows.MAF(dim, a.num_layers, [a.hidden] * 2),
    "iaf": lambda dim, a: flows.IAF(dim, a.num_layers, [a.hidden] * 2),
    "spline": lambda dim, a: flows.SplineFlow(dim, a.num_layers, [a.hidden] * 2),
    "realnvp": lambda dim, a: flows.RealNVP(dim, 2 * a.num_layers, [a.hidden] * 2),
    "nice": lambda dim, a: flows.NICE(dim, 2 * a.num_layers, [a.hidden] * 2),
    "glow": lambda dim, a: flows.Glow(dim, a.num_layers, [a.hidden] * 2),
    "zuko-maf": lambda dim, a: flows.ZukoFlow(
        zuko.flows.MAF(dim, transforms=a.num_layers, hidden_features=[a.hidden] * 2)
    ),
    "zuko-nsf": lambda dim, a: flows.ZukoFlow(
        zuko.flows.NSF(dim, transforms=a.num_layers, hidden_features=[a.hidden] * 2)
    ),
}

# On image data (C, H, W), these names build the multi-scale image flows instead of a
# vector flow on the flattened pixels.
IMAGE_FLOW_BUILDERS: dict[str, Callable[[tuple[int, ...], argparse.Namespace], flows.Flow]] = {
    "glow": lambda shape, a: image_flows.Glow(
        shape, a.levels, a.num_layers, hidden_channels=a.hidden, num_blocks=1
    ),
    "realnvp": lambda shape, a: image_flows.RealNVP(
        shape, a.levels, max(1, a.num_layers // 2), hidden_channels=a.hidden, num_blocks=1
    ),
}


def _versions() -> dict[str, str]:
    return {
        "pyro_dgm": __version__,
        "pyro": pyro.__version__,
        "torch": torch.__version__,
        "zuko": zuko.__version__,
        "python": platform.python_version(),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-dgm", description="Deep generative models for Pyro: fit and report."
    )
    parser.add_argument("--version", action="version", version=f"pyro_dgm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit a model to an embedded data set, write a report")
    fit.add_argument("--data", default="moons", help=f"one of {', '.join(_data_names())}")
    fit.add_argument(
        "--model",
        default="spline",
        choices=[*sorted(FLOW_BUILDERS), "vae", *models.AUTOREGRESSIVE_MODELS],
        help="a flow, a VAE, or an autoregressive model of integer data (pixelcnn for "
        "images, wavenet for sequences)",
    )
    fit.add_argument("--epochs", type=int, default=200, help="maximum epochs (default 200)")
    fit.add_argument("--batch-size", type=int, default=256)
    fit.add_argument("--lr", type=float, default=2e-3)
    fit.add_argument("--num-layers", type=int, default=4)
    fit.add_argument(
        "--hidden", type=int, default=64, help="hidden units per layer (channels for images)"
    )
    fit.add_argument(
        "--levels",
        type=int,
        default=2,
        help="levels of the multi-scale image flows (glow, realnvp on image data); glow "
        "takes --num-layers steps per level, realnvp --num-layers // 2 couplings per stage",
    )
    fit.add_argument("--patience", type=int, default=15, help="early-stopping patience (epochs)")
    fit.add_argument("--max-seconds", type=float, default=None, help="training time budget")
    fit.add_argument(
        "--dequantization",
        choices=sorted(models.DEQUANTIZATIONS),
        default=None,
        help="for discrete data (digits): uniform or variational (default uniform)",
    )
    fit.add_argument(
        "--num-samples", type=int, default=1000, help="K of the importance-weighted test bound"
    )
    vae = fit.add_argument_group("VAE (--model vae)")
    vae.add_argument("--prior", choices=sorted(models.PRIORS), default="normal")
    vae.add_argument("--posterior", choices=sorted(models.POSTERIORS), default="gaussian")
    vae.add_argument(
        "--likelihood",
        choices=sorted(models.LIKELIHOODS),
        default=None,
        help="default: discretized_logistic for discrete data, gaussian otherwise; "
        "bernoulli binarizes discrete data at half its levels",
    )
    vae.add_argument("--latent-dim", type=int, default=None, help="16 for images, 2 for vectors")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    fit.add_argument("--out", type=Path, default=None, help="report folder (runs/DATA-MODEL)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    add_evaluate_parser(commands)
    return parser


def _data_names() -> list[str]:
    return [name for name in datasets.DATASET_NAMES if name != "mnist"]


def _binarized(data: datasets.Dataset) -> datasets.Dataset:
    """Discrete data thresholded at half its levels, as {0, 1} (binarized digits)."""
    cut = data.num_levels // 2
    return dataclasses.replace(
        data,
        name=f"{data.name}-binarized",
        train=(data.train >= cut).to(torch.uint8),
        validation=(data.validation >= cut).to(torch.uint8),
        test=(data.test >= cut).to(torch.uint8),
        num_levels=2,
    )


def _build_pair(args: argparse.Namespace, data: datasets.Dataset) -> tuple[datasets.Dataset, Any]:
    """The model/guide pair that ``--model`` names, for this data (possibly binarized)."""
    dim = math.prod(data.event_shape)
    if args.model in models.AUTOREGRESSIVE_MODELS:
        if args.dequantization is not None:
            raise ValueError(
                f"--dequantization is for flows; {args.model} models the integers exactly"
            )
        return data, models.build_autoregressive(
            args.model, data, hidden=args.hidden, num_layers=args.num_layers
        )
    if args.model == "vae":
        if args.dequantization is not None:
            raise ValueError("--dequantization is for flows; a VAE uses --likelihood instead")
        discrete = data.num_levels is not None
        likelihood = args.likelihood or ("discretized_logistic" if discrete else "gaussian")
        if likelihood == "bernoulli":
            if not discrete:
                raise ValueError(f"--likelihood bernoulli needs discrete data; {args.data} is not")
            data = _binarized(data)
        args.likelihood = likelihood
        options = {
            "prior": args.prior,
            "posterior": args.posterior,
            "likelihood": likelihood,
            "num_levels": data.num_levels if likelihood.startswith("discretized") else None,
            "prior_layers": args.num_layers,
            "posterior_steps": args.num_layers,
            "flow_hidden_dims": [args.hidden] * 2,
        }
        if len(data.event_shape) == 3:
            vae = models.VAE.for_images(
                data.event_shape, latent_dim=args.latent_dim or 16, **options
            )
        else:
            vae = models.VAE.for_vectors(
                dim, latent_dim=args.latent_dim or 2, hidden_dims=[args.hidden] * 2, **options
            )
        if args.prior == "vamp":
            k = vae.prior.num_components
            vae.init_pseudo_inputs(data.train[torch.randperm(len(data.train))[:k]])
        return data, vae
    if len(data.event_shape) == 3 and args.model in IMAGE_FLOW_BUILDERS:
        flow = IMAGE_FLOW_BUILDERS[args.model](tuple(data.event_shape), args)
    else:
        flow = FLOW_BUILDERS[args.model](dim, args)
    if data.num_levels is None:
        if args.dequantization is not None:
            raise ValueError(
                f"--dequantization is for discrete data; --data {args.data} is continuous"
            )
        return data, FlowModel(flow)
    kind = args.dequantization or "uniform"
    return data, models.DEQUANTIZATIONS[kind](flow, data.num_levels, event_shape=data.event_shape)


def _entropy(name: str) -> float | None:
    name = datasets.ALIASES.get(name, name)
    return datasets.toy_entropy(name) if name in datasets.TOY_NAMES else None


def _plot_report(
    out: Path, pair: Any, data: datasets.Dataset, history: infer.History, title: str
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from . import plots

    written = []
    fig, ax = plt.subplots(figsize=(5, 4))
    plots.training_curve(history, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(out / "training_curve.png", dpi=120)
    plt.close(fig)
    written.append("training_curve.png")

    if data.num_levels is not None and len(data.event_shape) == 3:
        fig, axes = plt.subplots(1, 2, figsize=(8, 4.5))
        plots.image_grid(data.test[:36], num_levels=data.num_levels, ax=axes[0], title="test data")
        if isinstance(pair, (models.VAE, models.AutoregressiveModel)):
            samples, label = pair.sample(36), "samples"
        else:  # a dequantized flow draws some pixels just outside [0, L): show the nearest level
            samples, label = pair.sample(36, outside="nearest"), "samples (nearest level)"
        plots.image_grid(samples, num_levels=data.num_levels, ax=axes[1], title=label)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / "samples.png", dpi=120)
        plt.close(fig)
        written.append("samples.png")
    if data.num_levels is not None and len(data.event_shape) == 2:  # sequences (C, T)
        fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True, sharey=True)
        for ax, (values, label) in zip(
            axes, [(data.test[:3], "test data"), (pair.sample(3), "samples")], strict=True
        ):
            ax.plot(values[:, 0].T.float().numpy(), lw=1)
            ax.set_ylabel("level")
            ax.set_title(label)
        axes[-1].set_xlabel("position")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / "samples.png", dpi=120)
        plt.close(fig)
        written.append("samples.png")
    if data.event_shape == (2,):
        has_density = isinstance(pair, FlowModel)
        fig, axes = plt.subplots(1, 1 + has_density, figsize=(5 + 5 * has_density, 4.5))
        axes = list(np.atleast_1d(axes))
        if has_density:
            flow_dist = pair.flow()
            plots.density_2d(
                flow_dist.log_prob,
                samples=data.test,
                ax=axes[0],
                title="model density, test points",
            )
        samples = pair.sample(len(data.test)).reshape(-1, 2)
        ax = axes[-1]
        ax.scatter(*data.test.T, s=2, alpha=0.4, label="test data")
        ax.scatter(*samples.T, s=2, alpha=0.4, label="model samples")
        if has_density:
            ax.set_xlim(axes[0].get_xlim())
            ax.set_ylim(axes[0].get_ylim())
        ax.legend(markerscale=5)
        ax.set_title("samples")
        fig.suptitle(title)
        fig.tight_layout()
        name = "density.png" if has_density else "samples.png"
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(name)
    return written


def run_fit(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``pyro-dgm fit`` and return the metrics it wrote."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    data = datasets.load(args.data)
    data, pair = _build_pair(args, data)
    run_name = f"{args.data}-{args.model}"
    if args.model == "vae":
        run_name += f"-{args.prior}-{args.posterior}"
    elif data.num_levels is not None and args.model not in models.AUTOREGRESSIVE_MODELS:
        run_name += f"-{args.dequantization or 'uniform'}"
    out = args.out or Path("runs") / run_name
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        checkpoint.unlink()  # a fresh run; resuming is fit(..., checkpoint=...) from Python

    start = time.perf_counter()
    history = infer.fit(
        pair.model,
        pair.guide,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        max_seconds=args.max_seconds,
        checkpoint=checkpoint,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    # the whole state of the pair (parameters and buffers: ActNorm's initialisation flag,
    # the 1x1 convolutions' permutations), loadable with weights_only=True into the pair
    # that the same command line builds; the checkpoint holds Pyro's parameters only
    torch.save(pair.state_dict(), out / "model.pt")
    test = infer.log_likelihood(pair.model, pair.guide, data.test, num_particles=10)
    bounds = {test.bound: test}
    if test.bound != "exact":  # latent variables: the importance-weighted bound too, named
        iwae = infer.importance_log_likelihood(
            pair.model, pair.guide, data.test, num_samples=args.num_samples
        ).summary()
        test, bounds[iwae.bound] = iwae, iwae
    metrics: dict[str, Any] = {
        "command": "fit",
        "data": args.data,
        "model": args.model,
        "dequantization": (
            args.dequantization or "uniform"
            if data.num_levels is not None
            and args.model not in ("vae", *models.AUTOREGRESSIVE_MODELS)
            else None
        ),
        "vae": (
            {"prior": args.prior, "posterior": args.posterior, "likelihood": args.likelihood}
            if args.model == "vae"
            else None
        ),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "num_train": len(data.train),
        "num_validation": len(data.validation),
        "num_test": len(data.test),
        "test_nll_nats": -test.nats,
        "test_nll_stderr": test.stderr,
        "bound": test.bound,
        "test_bits_per_dim": test.bits_per_dim if data.num_levels is not None else None,
        "bounds": {
            name: {"nll_nats": -b.nats, "stderr": b.stderr, "bits_per_dim": b.bits_per_dim}
            for name, b in bounds.items()
        },
        "data_entropy_nats": _entropy(args.data),
        "epochs_run": len(history.epoch),
        "best_epoch": history.best_epoch,
        "best_validation_nll_nats": history.best_validation_loss,
        "stopped_early": history.stopped_early,
        "train_seconds": seconds,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "versions": _versions(),
    }
    title = f"{args.model} on {data.name}: test NLL {-test.nats:.3f} nats ({test.bound})"
    if data.num_levels is not None:
        title = f"{args.model} on {args.data}: {test.bits_per_dim:.3f} bits/dim ({test.bound})"
    metrics["figures"] = _plot_report(out, pair, data, history, title)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics | {"out": str(out)}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyro-dgm`` command."""
    args = _parser().parse_args(argv)
    if args.command == "evaluate":
        return evaluate_command(args)
    try:
        metrics = run_fit(args)
    except ValueError as error:
        print(f"pyro-dgm: error: {error}", file=sys.stderr)
        return 2
    entropy, bpd = metrics["data_entropy_nats"], metrics["test_bits_per_dim"]
    floor = f" (data entropy {entropy:.3f})" if entropy is not None else ""
    floor += f", {bpd:.4f} bits/dim" if bpd is not None else ""
    print(
        f"{metrics['model']} on {metrics['data']}: test NLL {metrics['test_nll_nats']:.4f} "
        f"± {metrics['test_nll_stderr']:.4f} nats ({metrics['bound']}){floor}, "
        f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.1f} s; "
        f"report in {metrics['out']}/"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
