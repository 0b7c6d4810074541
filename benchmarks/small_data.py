"""Every model of pyro-dgm fit on a 1,000-image subset of digits, with and without
regularisation, over seeds: held-out test nats per image and bits/dim.

The question of issue 21: how do the models land when the data are few (1,000 training
images of 8x8 digits, 17 levels; the validation split of 180 images for early stopping;
the 360 test images scored), and what do weight decay (AdamW), dropout in the coupling
networks and an exponential moving average of the parameters (Polyak) change? Each model
is built by the command-line tool's own builder with its defaults
(``pyro_dgm/cli/defaults.py``: the learning rate, batch size and patience per kind of
model); the regularised run adds ``--weight-decay``, ``--ema`` and, for image flows,
``--dropout`` (``--ar-dropout`` for PixelCNN and WaveNet). The test figure is exact for
the autoregressive models and the importance-weighted bound with ``--num-samples`` draws
for the latent-variable models.

    python benchmarks/small_data.py --threads 1 --jobs 2 --seeds 0 1 2 --max-seconds 300
    python benchmarks/small_data.py --smoke        # a quick check of the script
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import math
import multiprocessing
import platform
import statistics
import time

import pyro
import torch
from tqdm import tqdm

import pyro_dgm
from pyro_dgm import infer
from pyro_dgm.cli.build import build_pair, load_data, resolve_config
from pyro_dgm.cli.config import RunConfig
from pyro_dgm.cli.fit import Prepared, evaluate

#: name: the pyro-dgm fit settings of the model (the rest are the tool's defaults).
MODELS: dict[str, dict] = {
    "wavenet": {"model": "wavenet", "data": "digit_sequences", "output": "logistic_mixture"},
    "wavenet (categorical)": {
        "model": "wavenet",
        "data": "digit_sequences",
        "output": "categorical",
    },
    "pixelcnn": {"model": "pixelcnn", "output": "logistic_mixture"},
    "pixelcnn (categorical)": {"model": "pixelcnn", "output": "categorical"},
    "vae": {"model": "vae"},
    "vae (categorical)": {"model": "vae", "likelihood": "categorical"},
    "vae + flow prior": {"model": "vae", "prior": "flow"},
    "vae + iaf + flow prior": {"model": "vae", "prior": "flow", "posterior": "iaf"},
    "vae + vampprior": {"model": "vae", "prior": "vamp"},
    "realnvp + var. deq.": {"model": "realnvp", "dequantization": "variational"},
    "glow + var. deq.": {"model": "glow", "dequantization": "variational"},
    "spline + unif. deq.": {"model": "spline", "dequantization": "uniform"},
}
#: The models that train to the time budget and score longest: started first.
_SLOW = ("realnvp", "glow", "pixelcnn", "wavenet")
DIMS = 64
NUM_TRAIN = 1000


def _subset(data, num_train: int, seed: int):
    """The first ``num_train`` training points of a seeded permutation (validation and
    test splits unchanged)."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(data.train), generator=generator)[:num_train]
    changes = {"train": data.train[index]}
    for name in ("train_labels", "train_context"):
        if getattr(data, name, None) is not None:
            changes[name] = getattr(data, name)[index]
    return dataclasses.replace(data, **changes)


def run_one(settings: dict, seed: int, regularised: bool, args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    extra = {"weight_decay": 0.0, "ema": 0.0}  # off, whatever the tool's defaults
    if regularised:
        extra = {"weight_decay": args.weight_decay, "ema": args.ema}
    config = RunConfig(
        data=settings.get("data", "digits"),
        num_samples=None,
        seed=seed,
        epochs=args.epochs,
        max_seconds=args.max_seconds,
        device="cpu",
        **{k: v for k, v in settings.items() if k != "data"},
        **extra,
    )
    data = load_data(config)
    # dropout explicitly, on or off, whatever the tool's defaults (0.1 for image flows)
    if config.model in ("realnvp", "glow"):
        config = config.replace(dropout=args.dropout if regularised else 0.0)
    if config.model in ("pixelcnn", "wavenet"):
        config = config.replace(dropout=args.ar_dropout if regularised else 0.0)
    config = resolve_config(config, data)
    if config.num_samples is not None:
        config = config.replace(num_samples=args.num_samples)
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    data = _subset(data, NUM_TRAIN, seed)
    data, pair = build_pair(config, data)
    start = time.perf_counter()
    history = infer.fit(
        pair.model,
        pair.guide,
        data,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        patience=config.patience,
        max_seconds=config.max_seconds,
        weight_decay=config.weight_decay,
        ema=config.ema,
        progress=False,
        device="cpu",
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test, _ = evaluate(Prepared(config, data, pair))
    return {
        "nats": -test.nats,
        "bits_per_dim": -test.nats / (DIMS * math.log(2)),
        "bound": test.bound,
        "validation": history.best_validation_loss,
        "best_epoch": history.best_epoch,
        "epochs": len(history.epoch),
        "stop_reason": history.stop_reason,
        "train_seconds": train_seconds,
        "score_seconds": time.perf_counter() - start,
    }


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="training budget each")
    parser.add_argument("--num-samples", type=int, default=1000, help="K of the IWAE bound")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--dropout", type=float, default=0.1, help="image flows only")
    parser.add_argument(
        "--ar-dropout", type=float, default=0.1, help="pixelcnn and wavenet (regularised runs)"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once, each in its own process of --threads"
    )
    parser.add_argument(
        "--regularisation",
        choices=["both", "off", "on"],
        default="both",
        help="which runs: without, with, or both",
    )
    parser.add_argument("--smoke", action="store_true", help="two epochs, K=8, one seed")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.num_samples, args.seeds, args.max_seconds = 2, 8, [0], 30.0
    torch.set_num_threads(args.threads)
    print(
        f"pyro_dgm {pyro_dgm.__version__} | torch {torch.__version__} | pyro {pyro.__version__} "
        f"| python {platform.python_version()} | threads {args.threads} | seeds {args.seeds}"
    )
    print(
        f"digits: {NUM_TRAIN} training images (seeded subset), 180 validation, 360 test | "
        f"epochs <= {args.epochs}, training budget {args.max_seconds:g} s each | K = "
        f"{args.num_samples} | regularised: weight decay {args.weight_decay:g} (AdamW), EMA "
        f"{args.ema:g}, dropout {args.dropout:g} (image flows), {args.ar_dropout:g} (pixelcnn, "
        "wavenet)"
    )
    print(f"{args.jobs} run(s) at once, {args.threads} thread(s) each")
    modes = {"both": (False, True), "off": (False,), "on": (True,)}[args.regularisation]
    jobs = [(m, r, s) for m in args.models for r in modes for s in args.seeds]
    slow_first = sorted(jobs, key=lambda job: MODELS[job[0]]["model"] not in _SLOW)
    done: dict[tuple[str, bool, int], dict] = {}
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
        futures = {
            pool.submit(run_one, MODELS[m], s, r, args): (m, r, s) for m, r, s in slow_first
        }
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(jobs), desc="runs"):
            name, regularised, seed = futures[future]
            run = done[name, regularised, seed] = future.result()
            tqdm.write(  # each run as it ends, so a stopped benchmark keeps what it measured
                f"{name} | reg. {'on' if regularised else 'off'} | seed {seed} | "
                f"{run['nats']:.2f} nats ({run['bound']}) | best epoch {run['best_epoch']}/"
                f"{run['epochs']} ({run['stop_reason']}) | train {run['train_seconds']:.0f} s"
                f" | score {run['score_seconds']:.0f} s"
            )
    results: dict[tuple[str, bool], list[dict]] = {}
    for name, regularised, seed in jobs:  # in the order of the table, seeds in order
        results.setdefault((name, regularised), []).append(done[(name, regularised, seed)])
    print()
    header = f"{'model':<24} {'reg.':<5} {'test nats':>16} {'bits/dim':>16} {'bound':<14}"
    print(header + " best epoch / epochs (stop)      train s  score s")
    for (name, regularised), runs in results.items():
        nats = [r["nats"] for r in runs]
        bpd = [r["bits_per_dim"] for r in runs]
        epochs = ", ".join(f"{r['best_epoch']}/{r['epochs']} ({r['stop_reason']})" for r in runs)
        print(
            f"{name:<24} {'on' if regularised else 'off':<5} {_mean_sd(nats):>16} "
            f"{_mean_sd(bpd):>16} {runs[0]['bound']:<14} {epochs:<30} "
            f"{statistics.mean(r['train_seconds'] for r in runs):7.1f} "
            f"{statistics.mean(r['score_seconds'] for r in runs):7.1f}"
        )
    print("\nper seed (test nats):")
    for (name, regularised), runs in results.items():
        seeds = ", ".join(f"{r['nats']:.2f}" for r in runs)
        print(f"  {name:<24} {'on' if regularised else 'off':<4} {seeds}")


if __name__ == "__main__":
    main()
