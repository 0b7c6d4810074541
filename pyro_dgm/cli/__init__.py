r"""The ``pyro-dgm`` command-line tool: fit a model to an embedded data set and write its
report; continue an interrupted run; evaluate a fitted run with the diagnostics.

.. code-block:: console

    $ pyro-dgm fit --data moons --model spline
    $ pyro-dgm fit --data rings --model maf --epochs 50 --out runs/rings
    $ pyro-dgm fit --resume runs/rings         # after Ctrl-C: continue from the last epoch
    $ pyro-dgm evaluate runs/rings             # diagnostics (k-hat, ELBO surgery, ArviZ)
    $ pyro-dgm compress runs/pixelcnn x.npy x.pdgm   # a fitted run as a lossless codec
    $ pyro-dgm decompress runs/pixelcnn x.pdgm x.npy
    $ pyro-dgm fit --data digits --model pixelcnn --conditional   # p(x | label)
    $ torchrun --nproc_per_node=4 -m pyro_dgm.cli fit --data digits --model pixelcnn

The package: :mod:`~pyro_dgm.cli.config` (the run's settings, :class:`RunConfig`),
:mod:`~pyro_dgm.cli.build` (settings and data to a model/guide pair),
:mod:`~pyro_dgm.cli.devices` (``--device``),
:mod:`~pyro_dgm.cli.runs` (run folders on disk), :mod:`~pyro_dgm.cli.fit` and
:mod:`~pyro_dgm.cli.evaluate` and :mod:`~pyro_dgm.cli.compress` (the commands). Every failure is one
``pyro-dgm: error: ...`` line on stderr with exit status 2; Ctrl-C exits with 130.

A run's report gives the held-out negative log-likelihood in nats and in bits per
dimension, with the bound it is (exact for flows and autoregressive models, the
importance-weighted bound with :math:`K` draws for VAEs and dequantized flows):

.. math:: \mathrm{NLL} = -\frac1N \sum_{i=1}^N \log \hat p(x_i), \qquad
    \mathrm{bpd} = \frac{\mathrm{NLL}}{D \log 2}
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .. import datasets, models
from .._version import __version__
from ..distributions import OUTPUTS
from .build import (
    AUTOREGRESSIVE_DROPOUT,
    AUTOREGRESSIVE_OUTPUT,
    FLOW_BUILDERS,
    GLOW_CHECKERBOARD_STEPS,
    IMAGE_FLOW_BUILDERS,
    IMAGE_FLOW_DROPOUT,
    build_pair,
    resolve_config,
)
from .compress import add_compress_parsers
from .config import DATA_NAMES, MODEL_NAMES, RunConfig
from .defaults import TRAINING_DEFAULTS
from .errors import report_error
from .evaluate import add_evaluate_parser, evaluate_command
from .fit import RunInterrupted, run_fit

__all__ = [
    "FLOW_BUILDERS",
    "IMAGE_FLOW_BUILDERS",
    "RunConfig",
    "build_pair",
    "build_parser",
    "datasets",
    "main",
    "resolve_config",
    "run_fit",
]

_DEFAULTS = RunConfig()

NUM_LAYERS_HELP = (
    f"the depth (default {_DEFAULTS.num_layers}); per model: maf, iaf, spline, zuko-maf, "
    "zuko-nsf: layers; glow (vectors): steps; realnvp, nice (vectors): pairs of couplings "
    "(2N couplings); glow, realnvp on images: the default of --steps-per-level; vae: the "
    "default of --prior-layers and --posterior-steps; pixelcnn: gated blocks; wavenet: "
    "dilated layers"
)


def _per_kind(setting: str) -> str:
    """The defaults of a training setting per kind of model, for the help."""
    kinds = {"flow": "vector flows", "image_flow": "image flows", "vae": "VAEs"}
    kinds["autoregressive"] = "pixelcnn, wavenet"
    return ", ".join(
        f"{getattr(TRAINING_DEFAULTS[kind], setting):g} for {name}" for kind, name in kinds.items()
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one ``pyro-dgm: error:`` line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pyro-dgm: error: {message} (see `{self.prog} --help`)\n")


def _given(parser: argparse._ActionsContainer, *flags: str, **kwargs: object) -> None:
    """A flag of a :class:`RunConfig` setting: absent from the namespace unless given,
    so that the config's own defaults apply and ``--resume`` knows what was asked."""
    parser.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)


def _add_fit_parser(commands: argparse._SubParsersAction) -> None:
    d = _DEFAULTS
    fit = commands.add_parser(
        "fit",
        help="fit a model to an embedded data set, write a report",
        description="Fit a model/guide pair and write a run folder (config.json, "
        "checkpoint.pt, model.pt, metrics.json, figures). The folder is written "
        "beside its destination and renamed into place; Ctrl-C keeps the last complete "
        "epoch, which --resume continues.",
    )
    _given(fit, "--data", help=f"one of {', '.join(DATA_NAMES)} (default {d.data})")
    _given(
        fit,
        "--model",
        choices=list(MODEL_NAMES),
        help="a flow, a VAE, or an autoregressive model of integer data (pixelcnn for "
        f"images, wavenet for sequences); default {d.model}",
    )
    _given(fit, "--epochs", type=int, help=f"maximum epochs of the run (default {d.epochs})")
    _given(
        fit, "--batch-size", type=int, help=f"default per kind of model: {_per_kind('batch_size')}"
    )
    _given(fit, "--lr", type=float, help=f"Adam's learning rate (default {_per_kind('lr')})")
    _given(fit, "--num-layers", type=int, help=NUM_LAYERS_HELP)
    _given(fit, "--hidden", type=int, help=f"units per layer, channels for images ({d.hidden})")
    image = fit.add_argument_group("multi-scale image flows (glow, realnvp on image data)")
    _given(image, "--levels", type=int, help="levels (default 2)")
    _given(
        image,
        "--steps-per-level",
        type=int,
        help="glow: steps of flow per level (default --num-layers); realnvp: couplings per "
        "stage, two stages per level (default max(1, --num-layers // 2))",
    )
    _given(
        image,
        "--checkerboard-steps",
        type=int,
        help="glow: checkerboard couplings at full resolution before the first squeeze "
        f"(default {GLOW_CHECKERBOARD_STEPS}; 0: the paper's Glow)",
    )
    _given(
        image,
        "--memory-saving",
        action="store_true",
        help="memory-saving backpropagation: each level's steps rebuild their inputs in the "
        "backward pass instead of storing activations (flat memory in depth, about one "
        "extra forward pass of time)",
    )
    _given(
        image,
        "--dropout",
        type=float,
        help="dropout probability during training: in the coupling networks' residual blocks "
        f"of an image flow (default {IMAGE_FLOW_DROPOUT}, 0 with --memory-saving), or on the "
        f"gated features of pixelcnn's and wavenet's layers (default {AUTOREGRESSIVE_DROPOUT})",
    )
    _given(fit, "--patience", type=int, help=f"early-stopping patience ({_per_kind('patience')})")
    _given(fit, "--max-seconds", type=float, help="training time budget of the run")
    _given(
        fit,
        "--weight-decay",
        type=float,
        help=f"decoupled weight decay (AdamW) of every parameter, 0: Adam (default "
        f"{_per_kind('weight_decay')})",
    )
    _given(
        fit,
        "--ema",
        type=float,
        metavar="DECAY",
        help="evaluate and save an exponential moving average of the parameters with this "
        f"decay (Polyak averaging), 0: off (default {_per_kind('ema')})",
    )
    _given(
        fit,
        "--dequantization",
        choices=sorted(models.DEQUANTIZATIONS),
        help="for flows on discrete data (digits): uniform or variational (default uniform)",
    )
    _given(
        fit,
        "--num-samples",
        type=int,
        help="K of the importance-weighted test bound of latent-variable pairs (VAEs, "
        "dequantized flows; default 1000)",
    )
    autoregressive = fit.add_argument_group("autoregressive models (pixelcnn, wavenet)")
    _given(
        autoregressive,
        "--output",
        choices=list(OUTPUTS),
        help="each conditional: a mixture of discretized logistics over the levels, or a "
        f"categorical (a softmax over the levels); default {AUTOREGRESSIVE_OUTPUT}",
    )
    vae = fit.add_argument_group("VAE (--model vae)")
    _given(vae, "--prior", choices=list(models.PRIORS), help="default normal")
    _given(vae, "--posterior", choices=list(models.POSTERIORS), help="default gaussian")
    _given(
        vae,
        "--likelihood",
        choices=list(models.LIKELIHOODS),
        help="default: discretized_logistic for discrete data, gaussian otherwise; "
        "bernoulli binarizes discrete data at half its levels; categorical is a softmax over "
        "the levels of each pixel",
    )
    _given(vae, "--latent-dim", type=int, help="default 16 for images, 2 for vectors")
    _given(vae, "--prior-layers", type=int, help="layers of --prior flow (default --num-layers)")
    _given(
        vae,
        "--posterior-steps",
        type=int,
        help="steps of a flow posterior: iaf, planar, householder, sylvester "
        "(default --num-layers)",
    )
    _given(vae, "--kl-weight", type=float, help="beta after warm-up (default 1: the ELBO)")
    _given(
        vae,
        "--kl-warmup",
        "--warmup-steps",
        dest="warmup_steps",
        type=int,
        metavar="STEPS",
        help="steps of linear KL warm-up (default "
        f"{models.vae.VAMP_WARMUP_STEPS} for --prior vamp, which collapses without it; 0 otherwise)",
    )
    _given(
        fit,
        "--conditional",
        action="store_true",
        help="model the data given their class label, p(x | c), with the one-hot label as "
        "context (digits, digit_sequences: the digit; toys: the component); pixelcnn, "
        "wavenet, vae, and the vector flows maf, iaf, realnvp, nice, glow on the toys; the "
        "report shows samples per class",
    )
    _given(
        fit,
        "--device",
        help="where to train, evaluate and sample: cpu, cuda (under torchrun: each "
        "process's LOCAL_RANK GPU), cuda:N, mps (default: cuda if available, else cpu)",
    )
    _given(fit, "--seed", type=int, help=f"default {d.seed}")
    run = fit.add_argument_group("the run folder")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the run folder, absent or empty (default runs/DATA-MODEL, numbered -2, -3, "
        "... when taken)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (a folder of pyro-dgm's files) once the new one ends",
    )
    run.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="DIR",
        help="continue the run in DIR with its settings (DIR/config.json) up to its epochs "
        "(or a new total --epochs, --max-seconds; another --device), then report it, on "
        "any number of torchrun processes",
    )
    fit.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.set_defaults(handler=fit_command)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``pyro-dgm`` command and its ``fit`` and ``evaluate`` commands.

    Example:
        >>> args = build_parser().parse_args(["fit", "--data", "rings", "--model", "maf"])
        >>> args.data, args.model
        ('rings', 'maf')
    """
    parser = _Parser(
        prog="pyro-dgm", description="Deep generative models for Pyro: fit, report, compress."
    )
    parser.add_argument("--version", action="version", version=f"pyro_dgm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_fit_parser(commands)
    add_evaluate_parser(commands)
    add_compress_parsers(commands)
    return parser


def _epochs(metrics: dict) -> str:
    total, resumed = metrics["epochs_run"], metrics["resumed_from_epoch"]
    if not resumed:
        return f"{total} epochs"
    return f"epochs {resumed + 1}-{total} (resumed)" if total > resumed else f"{total} epochs"


def fit_command(args: argparse.Namespace) -> int:
    """``pyro-dgm fit``: run, print a one-line summary (rank 0 of a torchrun group; the
    other ranks print nothing), return the exit status."""
    metrics = run_fit(args)
    if metrics is None:  # another rank of a torchrun group: rank 0 reports
        return 0
    entropy, bpd = metrics["data_entropy_nats"], metrics["test_bits_per_dim"]
    floor = f" (data entropy {entropy:.3f})" if entropy is not None else ""
    floor += f", {bpd:.4f} bits/dim" if bpd is not None else ""
    given = " given the label" if metrics.get("conditional") else ""
    print(
        f"{metrics['model']} on {metrics['data']}{given}: test NLL "
        f"{metrics['test_nll_nats']:.4f} "
        f"± {metrics['test_nll_stderr']:.4f} nats ({metrics['bound']}){floor}, "
        f"{_epochs(metrics)} in {metrics['train_seconds']:.1f} s; "
        f"report in {metrics['out']}/"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyro-dgm`` command: the exit status (0 done, 1 a non-finite
    evaluation, 2 an error, 130 Ctrl-C).

    Example:
        >>> main(["fit", "--data", "nowhere"])  # one "pyro-dgm: error:" line on stderr
        2
    """
    args = build_parser().parse_args(argv)
    joined_before = _in_process_group()
    try:
        return args.handler(args)
    except RunInterrupted as interrupted:
        print(f"pyro-dgm: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("pyro-dgm: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, FloatingPointError) as error:
        return report_error(error)
    finally:
        if not joined_before and _in_process_group():  # the group this command joined
            _leave_process_group()


def _leave_process_group() -> None:
    """Destroy the group once every rank is done with it. A rank that tore a gloo group
    down while rank 0 was still evaluating was, now and then, aborted by the C++ runtime
    ("terminate called without an active exception"), so the ranks meet at a barrier
    first; when it fails (another rank failed, or rank 0 evaluated past the group's
    timeout) each rank leaves on its own, as before."""
    import torch.distributed as dist

    try:
        dist.barrier()
    except (RuntimeError, ValueError):  # torch's DistBackendError is a RuntimeError
        pass
    finally:
        dist.destroy_process_group()


def _in_process_group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()
