"""Per-step cost of pyro_dgm's ``fit`` against a hand-written PyTorch loop and Pyro's SVI.

Same flow (MAF, Pyro's AffineAutoregressive layers, or ``--flow realnvp``), same
data (two moons), same batch size, same optimizer (Adam) and gradient clipping; no
validation split (``fit`` validates the first epoch of its call, its default).

Two raw loops: one as such a loop is usually written (torch's default kernels,
one tensor at a time on a CPU) and one with the multi-tensor (``foreach``) Adam
and norm that ``fit`` uses; the second isolates what ``fit``'s Pyro machinery
costs. Each round runs every contender once on a fresh flow (``--epochs``
epochs), in an order rotated between rounds; ratios to the raw loops are taken
within each round and summarised by their median and quartiles over
``--repeats`` rounds (step times on a shared machine swing by tens of percent
from one minute to the next).

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
from pyro_dgm.flows import MAF, RealNVP
from pyro_dgm.models import FlowModel

LR, CLIP = 1e-3, 10.0


def make_flow(seed: int, args: argparse.Namespace) -> MAF | RealNVP:
    torch.manual_seed(seed)
    flow = MAF if args.flow == "maf" else RealNVP
    return flow(2, num_layers=args.layers, hidden_dims=[args.hidden] * 2)


def raw_loop(
    data: torch.Tensor, seed: int, args: argparse.Namespace, foreach: bool | None = None
) -> tuple[float, int]:
    flow = make_flow(seed, args)
    optim = torch.optim.Adam(flow.parameters(), lr=LR, foreach=foreach)
    steps, start = 0, time.perf_counter()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(data)).split(args.batch_size):
            loss = -flow().log_prob(data[idx]).sum()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), CLIP, foreach=foreach)
            optim.step()
            steps += 1
    return time.perf_counter() - start, steps


def raw_loop_foreach(data: torch.Tensor, seed: int, args: argparse.Namespace) -> tuple[float, int]:
    return raw_loop(data, seed, args, foreach=True)


def pyro_dgm_fit(data: torch.Tensor, seed: int, args: argparse.Namespace) -> tuple[float, int]:
    pyro.clear_param_store()
    pair = FlowModel(make_flow(seed, args))
    start = time.perf_counter()
    history = infer.fit(
        pair.model,
        pair.guide,
        data,
        validation=None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=LR,
        clip_norm=CLIP,
        progress=False,
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
    parser.add_argument("--repeats", type=int, default=15, help="rounds")
    parser.add_argument("--flow", choices=["maf", "realnvp"], default="maf")
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
        f"{args.flow}: {args.layers} layers x {args.hidden} hidden; two moons, "
        f"{args.num_train} points, batch {args.batch_size}, {args.epochs} epochs x "
        f"{args.repeats} rounds"
    )
    data = datasets.two_moons(args.num_train, seed=args.seed)
    contenders = {
        "raw loop": raw_loop,
        "raw loop (foreach)": raw_loop_foreach,
        "pyro_dgm fit": pyro_dgm_fit,
        "Pyro SVI": pyro_svi,
    }
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    pyro.enable_validation(True)  # Pyro's default; fit and SVI run as users run them
    for run in contenders.values():  # warm-up
        run(data[: args.batch_size * 4], args.seed, args)
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, steps = contenders[name](data, args.seed + r, args)
            times[name].append(seconds / steps)

    def ratio(name: str, reference: str) -> str:
        values = [a / b for a, b in zip(times[name], times[reference], strict=True)]
        if len(values) < 2:
            return f"{values[0]:.3f}"
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return f"{med:.3f} [{q1:.3f}, {q3:.3f}]"

    print(
        f"{'contender':<20} {'ms/step (median)':>17} {'min':>8}   {'/ raw loop [IQR]':>22}"
        f"   {'/ raw loop (foreach) [IQR]':>26}"
    )
    for name, values in times.items():
        print(
            f"{name:<20} {1e3 * statistics.median(values):>17.3f} {1e3 * min(values):>8.3f}   "
            f"{ratio(name, 'raw loop'):>22}   {ratio(name, 'raw loop (foreach)'):>26}"
        )
    assert all(math.isfinite(v) for values in times.values() for v in values)


if __name__ == "__main__":
    main()
