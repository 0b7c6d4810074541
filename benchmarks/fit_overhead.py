"""Per-step cost of pyro_dgm's ``fit`` against a hand-written PyTorch loop and Pyro's SVI.

Same flow (MAF, Pyro's AffineAutoregressive layers), same data (two moons), same
batch size, same optimizer (Adam) and gradient clipping; no validation pass.
Each contender runs ``--epochs`` epochs ``--repeats`` times, alternating, and the
median seconds per step is reported with its ratio to the raw loop.

    python benchmarks/fit_overhead.py --threads 1
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

import pyro_dgm
from pyro_dgm import datasets, infer
from pyro_dgm.flows import MAF
from pyro_dgm.models import FlowModel

LR, CLIP = 1e-3, 10.0


def make_flow(seed: int, args: argparse.Namespace) -> MAF:
    torch.manual_seed(seed)
    return MAF(2, num_layers=args.layers, hidden_dims=[args.hidden] * 2)


def raw_loop(data: torch.Tensor, seed: int, args: argparse.Namespace) -> tuple[float, int]:
    flow = make_flow(seed, args)
    optim = torch.optim.Adam(flow.parameters(), lr=LR)
    steps, start = 0, time.perf_counter()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(data)).split(args.batch_size):
            loss = -flow().log_prob(data[idx]).sum()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), CLIP)
            optim.step()
            steps += 1
    return time.perf_counter() - start, steps


def pyro_dgm_fit(data: torch.Tensor, seed: int, args: argparse.Namespace) -> tuple[float, int]:
    pyro.clear_param_store()
    pair = FlowModel(make_flow(seed, args))
    start = time.perf_counter()
    history = infer.fit(
        pair.model, pair.guide, data, validation=None, epochs=args.epochs,
        batch_size=args.batch_size, lr=LR, clip_norm=CLIP, progress=False,
    )
    return time.perf_counter() - start, history.steps


def pyro_svi(data: torch.Tensor, seed: int, args: argparse.Namespace) -> tuple[float, int]:
    pyro.clear_param_store()
    pair = FlowModel(make_flow(seed, args))
    svi = SVI(pair.model, pair.guide, ClippedAdam({"lr": LR, "clip_norm": CLIP}), Trace_ELBO())
    steps, start = 0, time.perf_counter()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(data)).split(args.batch_size):
            svi.step(data[idx])
            steps += 1
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"pyro_dgm {pyro_dgm.__version__}, pyro {pyro.__version__}, torch {torch.__version__}, "
        f"python {platform.python_version()}; threads {torch.get_num_threads()}, seed {args.seed}"
    )
    print(
        f"MAF: {args.layers} layers x {args.hidden} hidden; two moons, {args.num_train} points, "
        f"batch {args.batch_size}, {args.epochs} epochs x {args.repeats} repeats"
    )
    data = datasets.two_moons(args.num_train, seed=args.seed)
    contenders = {"raw PyTorch loop": raw_loop, "pyro_dgm fit": pyro_dgm_fit, "Pyro SVI": pyro_svi}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    pyro.enable_validation(True)  # Pyro's default; fit and SVI run as users run them
    for run in contenders.values():  # warm-up
        run(data[: args.batch_size * 4], args.seed, args)
    for repeat in range(args.repeats):
        for name, run in contenders.items():
            seconds, steps = run(data, args.seed + repeat, args)
            times[name].append(seconds / steps)
    raw = statistics.median(times["raw PyTorch loop"])
    print(f"{'contender':<18} {'ms/step (median)':>17} {'min':>8} {'ratio to raw':>13}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<18} {1e3 * med:>17.3f} {1e3 * min(values):>8.3f} {med / raw:>13.3f}")
    assert math.isfinite(raw)


if __name__ == "__main__":
    main()
