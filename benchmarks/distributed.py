r"""Data-parallel training on torch.distributed: throughput of ``infer.fit`` on 1 and 2
processes launched by torchrun, same models, data, global batch and epochs.

Contenders (digits, 8x8, 17 levels; train split 1,257 images, test split 360):

* PixelCNN (``models.build_autoregressive("pixelcnn", ...)``: 32 feature maps, 5 gated
  blocks, mixture of logistics): exact test bits/dim;
* Glow (``image_flows.Glow((1, 8, 8), 2 levels, 4 steps, 32 hidden channels)``) under
  uniform dequantization: test bits/dim of the importance-weighted bound, K named.

Each run is ``python -m torch.distributed.run --standalone --nproc_per_node=N`` of this
script in ``--worker`` mode (gloo on the CPU, one thread per process), launched here as a
subprocess: ``infer.fit`` without validation for ``--epochs`` epochs of the same global
batch (``--batch-size``; each of N processes takes 1/N of it), seeded identically.
Throughput is training images per second over the epochs after the first (the first
pays for Pyro's validation and warm-up), from ``History.seconds``; rank 0 then scores
the test split. Every configuration runs ``--repeats`` rounds in an order rotated
between rounds; the table gives the median images/s and the 2-process/1-process ratio
within each round (median, and the range over rounds).

The ceiling: with one thread per process, two processes on a machine of C cores can at
best be min(2, C) times one process; the gradients' all_reduce (one bucket per step,
over gloo) and the Python overhead of each step come on top and are not shared.

Commands (from the repository root, virtual environment active):

    python benchmarks/distributed.py                 # about 5 minutes on 2 cores
    python benchmarks/distributed.py --smoke         # a few seconds per run: checks only
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch

import pyro_dgm
from pyro_dgm import datasets, image_flows, infer, models
from pyro_dgm.infer.distributed import process_group
from pyro_dgm.utils.zuko_import import import_zuko

MODELS = ("pixelcnn", "glow")
PROCESSES = (1, 2)


def _versions() -> str:
    return (
        f"pyro_dgm {pyro_dgm.__version__} | pyro {pyro.__version__} | torch {torch.__version__}"
        f" | zuko {import_zuko().__version__} | python {platform.python_version()} | "
        f"{platform.machine()}"
    )


def _pair(name: str, data: datasets.Dataset, smoke: bool) -> object:
    hidden = 8 if smoke else 32
    if name == "pixelcnn":
        layers = 2 if smoke else 5
        return models.build_autoregressive("pixelcnn", data, hidden=hidden, num_layers=layers)
    steps = 1 if smoke else 4
    flow = image_flows.Glow(tuple(data.event_shape), 2, steps, hidden_channels=hidden)
    return models.UniformDequantization(flow, data.num_levels, event_shape=data.event_shape)


def worker(args: argparse.Namespace) -> None:
    """One process of a torchrun group: train, then (rank 0) score and write the result."""
    torch.set_num_threads(1)
    group = process_group()
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    data = datasets.digits()
    pair = _pair(args.model, data, args.smoke)
    history = infer.fit(
        pair.model,
        pair.guide,
        data.train,
        validation=None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        patience=None,
        progress=False,
        seed=args.seed,
    )
    if not group.is_main:
        _leave()
        return
    seconds = history.seconds[-1] - history.seconds[0]
    images = (len(history.epoch) - 1) * len(data.train)
    start = time.perf_counter()
    with torch.no_grad():
        if args.model == "pixelcnn":
            test = infer.log_likelihood(pair.model, pair.guide, data.test)
        else:
            test = infer.importance_log_likelihood(
                pair.model, pair.guide, data.test, num_samples=args.num_samples
            ).summary()
    result = {
        "model": args.model,
        "processes": group.world,
        "threads_per_process": torch.get_num_threads(),
        "images_per_second": images / seconds,
        "epoch_seconds": [b - a for a, b in itertools.pairwise(history.seconds)],
        "test_bits_per_dim": test.bits_per_dim,
        "bound": test.bound,
        "test_seconds": time.perf_counter() - start,
        "final_train_loss": history.train_loss[-1],
        "num_parameters": sum(p.numel() for p in pair.parameters()),
    }
    Path(args.out).write_text(json.dumps(result))
    _leave()


def _leave() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _launch(model: str, processes: int, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYRO_DGM_DIST_TIMEOUT": "120"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(pyro_dgm.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", __file__, "--worker", "--model", model,
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--seed", str(args.seed), "--num-samples", str(args.num_samples), "--out", str(out),
    ] + (["--smoke"] if args.smoke else [])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{model} on {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, order rotated")
    parser.add_argument("--num-samples", type=int, default=100, help="K of Glow's test bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny models, 2 epochs, 1 round")
    parser.add_argument("--note", default="", help="a line about the machine, printed first")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.smoke:
        args.epochs, args.repeats, args.num_samples = 2, 1, 8
    cores = os.cpu_count()
    if args.note:
        print(f"note: {args.note}")
    print(_versions())
    print(
        f"cores {cores} | threads 1 per process (OMP_NUM_THREADS=1) | gloo | seed {args.seed}"
        f" | epochs {args.epochs} | global batch {args.batch_size} | rounds {args.repeats}"
    )
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()}")
    configs = [(m, n) for m in MODELS for n in PROCESSES]
    results: dict[tuple[str, int], list[dict]] = {c: [] for c in configs}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.repeats):
            order = configs[round_ % len(configs) :] + configs[: round_ % len(configs)]
            for model, n in order:
                out = Path(folder) / f"{model}-{n}-{round_}.json"
                results[model, n].append(_launch(model, n, args, out))
    print(f"load average at end (1, 5, 15 min): {os.getloadavg()}")
    print(f"wall time {time.perf_counter() - start:.0f} s\n")
    header = (
        f"{'model':<10} {'procs':>5} {'images/s':>9} {'2p/1p':>16} {'s/epoch':>8} "
        f"{'test bits/dim':>13} {'bound':<12} {'params':>8}"
    )
    print(header)
    print("-" * len(header))
    for model in MODELS:
        ratios = [
            two["images_per_second"] / one["images_per_second"]
            for one, two in zip(results[model, 1], results[model, 2], strict=True)
        ]
        for n in PROCESSES:
            runs = results[model, n]
            rate = statistics.median(r["images_per_second"] for r in runs)
            epoch = statistics.median(s for r in runs for s in r["epoch_seconds"])
            bits = statistics.median(r["test_bits_per_dim"] for r in runs)
            ratio = (
                f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"
                if n == 2
                else ""
            )
            print(
                f"{model:<10} {n:>5} {rate:>9.0f} {ratio:>16} {epoch:>8.2f} {bits:>13.4f} "
                f"{runs[0]['bound']:<12} {runs[0]['num_parameters']:>8}"
            )
    print(
        f"\nceiling: {min(2, cores)}x (2 processes of 1 thread on {cores} cores); the ratio is "
        "2-process images/s over 1-process images/s within each round (median [min, max])."
    )


if __name__ == "__main__":
    main()
