"""Memory and time of one training step of a deep multi-scale Glow: memory-saving
backpropagation (``MultiScaleGlow(..., memory_saving=True)``) against ordinary
backpropagation of the same network, against depth.

Network: ``MultiScaleGlow((1, S, S), num_levels=2, num_steps=K, hidden_channels=32,
num_blocks=1)`` (affine couplings, learned split prior), K = 4, 8, 16, 32, 64 steps per
level. Data: digits (``datasets.digits()``, 1x8x8, 17 levels), dequantized and scaled to
[0, 1); the 28x28 inputs are the same digits upsampled bilinearly to 28x28 (memory and time
do not depend on the values). One training step: ``zero_grad``, ``-log_prob(x).mean()``,
``backward``, Adam ``step``, on a batch of ``--batch`` images.

Memory. On the CPU, each (size, depth, mode) runs in a fresh Python process (glibc told to
return freed blocks to the system: ``MALLOC_MMAP_THRESHOLD_=65536``,
``MALLOC_TRIM_THRESHOLD_=0``, so that resident memory follows live memory). The process builds
the flow, initialises ActNorm with one pass under ``no_grad`` and builds Adam; it reads its
resident memory (``VmRSS`` of ``/proc/self/status``; tracemalloc would not see tensor
storage), runs a first training step (which allocates the gradients and Adam's state) and
reads its peak (``VmHWM``): *peak* and *step* (peak minus the memory before the step). Then
it resets the peak (``/proc/self/clear_refs``), reads ``VmRSS``, runs the second step's
forward and backward passes with the gradients kept allocated, and reads the peak again:
*passes*, the memory the passes themselves need above what was already there, i.e. the
activations (and the backward's temporaries); the targets are stated on it. With a GPU
(``--device cuda``), ``torch.cuda.memory_allocated`` and ``max_memory_allocated`` the same
way.

Time. For each (size, depth), one fresh process holds both flows with the same weights and
runs ``--rounds`` rounds; each round times ``--steps`` training steps of each mode, the order
rotated between rounds; the ratio memory-saving / ordinary is taken within each round
(memory is not affected by other processes on the machine; time is) and printed as median
[min, max] over rounds, with the median milliseconds per step.

Peers: the installed Pyro, zuko and normflows are searched for ``torch.autograd.Function``
subclasses (what a memory-saving backward needs); the script prints what it finds.

    python benchmarks/reversible_memory.py --threads 1 --figure reversible_memory.png
    python benchmarks/reversible_memory.py --depths 4 8 --sizes 8 --rounds 1 --steps 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("ordinary", "memory_saving")


# ---------------------------------------------------------------------------
# the workers (one fresh process each)
# ---------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _setup(size: int, depth: int, batch: int, hidden: int, seed: int, device: str):
    import torch
    import torch.nn.functional as F

    from pyro_dgm import datasets
    from pyro_dgm.flows import MultiScaleGlow

    torch.manual_seed(seed)
    y = datasets.digits().train[:batch].float()
    x = (y + torch.rand(y.shape, generator=torch.Generator().manual_seed(seed))) / 17
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    flow = MultiScaleGlow(
        (1, size, size), num_levels=2, num_steps=depth, hidden_channels=hidden, num_blocks=1
    ).to(device)
    x = x.to(device)
    with torch.no_grad():
        flow().log_prob(x)  # ActNorm's data-dependent initialisation
    return flow, x


def _step(flow, x, optimizer) -> None:
    optimizer.zero_grad()
    loss = -flow().log_prob(x).mean()
    loss.backward()
    optimizer.step()


class _Meter:
    """Current and peak memory, the peak resettable: resident memory on the CPU
    (``VmRSS``, ``VmHWM``; writing 5 to ``/proc/self/clear_refs`` resets the peak),
    allocated memory on a GPU."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.cuda = device.startswith("cuda")

    def now(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
            return self.torch.cuda.memory_allocated() / 2**20
        return _status_mb("VmRSS")

    def peak(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
            return self.torch.cuda.max_memory_allocated() / 2**20
        return _status_mb("VmHWM")

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")


def memory_worker(args: argparse.Namespace) -> dict:
    """Peak of the process through its first training step; then, with the gradients and
    Adam's state allocated, the peak of the second step's forward and backward passes
    above the memory before them: the activations (and the backward's temporaries)."""
    import torch

    torch.set_num_threads(args.threads)
    meter = _Meter(args.device)
    flow, x = _setup(args.size, args.depth, args.batch, args.hidden, args.seed, args.device)
    flow.memory_saving = args.mode == "memory_saving"
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-4)
    if meter.cuda:
        meter.reset()
    before = meter.now()
    _step(flow, x, optimizer)
    peak = meter.peak()
    optimizer.zero_grad(set_to_none=False)  # the gradients stay allocated
    meter.reset()
    before_passes = meter.now()
    loss = -flow().log_prob(x).mean()
    loss.backward()
    passes = meter.peak() - before_passes
    optimizer.step()
    return {
        "size": args.size,
        "depth": args.depth,
        "mode": args.mode,
        "params": sum(p.numel() for p in flow.parameters()),
        "before_mb": before,
        "peak_mb": peak,
        "passes_mb": passes,
    }


def time_worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    flows = {}
    for mode in MODES:
        flow, x = _setup(args.size, args.depth, args.batch, args.hidden, args.seed, args.device)
        flow.memory_saving = mode == "memory_saving"
        flows[mode] = (flow, torch.optim.Adam(flow.parameters(), lr=1e-4))
    flows["memory_saving"][0].load_state_dict(flows["ordinary"][0].state_dict())
    for flow, optimizer in flows.values():
        _step(flow, x, optimizer)  # warm-up: Adam's state, allocator
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    rounds = []
    for r in range(args.rounds):
        order = MODES if r % 2 == 0 else MODES[::-1]
        seconds = {}
        for mode in order:
            flow, optimizer = flows[mode]
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                _step(flow, x, optimizer)
            sync()
            seconds[mode] = (time.perf_counter() - start) / args.steps
        rounds.append(seconds)
    return {"size": args.size, "depth": args.depth, "rounds": rounds}


# ---------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------


def _run_worker(kind: str, args: argparse.Namespace, **point: object) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--threads", str(args.threads)]
    cmd += ["--batch", str(args.batch), "--hidden", str(args.hidden), "--seed", str(args.seed)]
    cmd += ["--rounds", str(args.rounds), "--steps", str(args.steps), "--device", args.device]
    for key, value in point.items():
        cmd += [f"--{key}", str(value)]
    # a fixed mmap threshold: freed tensors go back to the system, so resident memory
    # follows live memory (glibc's adaptive threshold would keep freed blocks mapped)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    env = env if kind == "memory" else dict(os.environ)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"worker {point} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peers() -> list[str]:
    """What the installed peers hold that a memory-saving backward would need."""
    import importlib

    lines = []
    pattern = re.compile(r"^class (\w+)\((?:torch\.)?autograd\.Function\)", re.MULTILINE)
    for name in ("pyro", "zuko", "normflows"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            lines.append(f"  {name}: not installed")
            continue
        root = Path(module.__file__).parent
        found = []
        for path in sorted(root.rglob("*.py")):
            for match in pattern.finditer(path.read_text(errors="replace")):
                found.append(f"{match.group(1)} ({path.relative_to(root.parent)})")
        version = getattr(module, "__version__", "?")
        lines.append(f"  {name} {version}: autograd Functions: {', '.join(found) or 'none'}")
    return lines


def _fit_line(depths: list[int], values: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of values against depths."""
    n = len(depths)
    mx, my = sum(depths) / n, sum(values) / n
    sxx = sum((d - mx) ** 2 for d in depths)
    slope = sum((d - mx) * (v - my) for d, v in zip(depths, values, strict=True)) / sxx
    return slope, my - slope * mx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 28])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--worker", choices=("memory", "time"), default=None)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--mode", choices=MODES, default="ordinary")
    args = parser.parse_args()
    if args.worker == "memory":
        print(json.dumps(memory_worker(args)))
        return
    if args.worker == "time":
        print(json.dumps(time_worker(args)))
        return

    import pyro
    import torch

    import pyro_dgm

    print("Memory-saving backpropagation of a multi-scale Glow against ordinary backpropagation")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, pyro {pyro.__version__}, "
        f"pyro_dgm {pyro_dgm.__version__}, {platform.machine()} ({os.cpu_count()} cores)"
    )
    print(
        f"threads {args.threads}, seed {args.seed}, batch {args.batch}, hidden channels "
        f"{args.hidden}, 2 levels, depths K {args.depths}, sizes {args.sizes}, device "
        f"{args.device}"
    )
    try:
        load = os.getloadavg()
        print(
            f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}: the machine is "
            "shared with other processes; memory is not affected by them, timings are "
            "(ratios are taken within rounds)"
        )
    except OSError:
        pass
    metric = "max_memory_allocated" if args.device.startswith("cuda") else "peak RSS (VmHWM)"
    print(f"memory: {metric}, one fresh process per point; MB = 2^20 bytes")
    print("\nPeers (installed versions searched for torch.autograd.Function subclasses):")
    for line in _peers():
        print(line)
    print(
        "  none of them rebuilds a stack's activations from its outputs: Pyro's Functions are "
        "numerical helpers, zuko's AdaptiveCheckpointAdjoint saves memory in the ODE solver of "
        "its continuous flows, normflows' MemoryEfficientLogDetEstimator is the residual "
        "flows' log-det estimator"
    )

    memory: dict[tuple[int, int, str], dict] = {}
    for size in args.sizes:
        for depth in args.depths:
            for mode in MODES:
                memory[size, depth, mode] = _run_worker(
                    "memory", args, size=size, depth=depth, mode=mode
                )
    print(f"\nMemory of one training step ({args.batch} images per batch)")
    print(
        "  peak: the process's peak through its first step (imports, data, flow, ActNorm's "
        "initialisation, the step with its gradients and Adam's state)"
    )
    print(
        "  passes: the peak of the second step's forward and backward passes above the memory "
        "before them (gradients and Adam's state already allocated): the activations"
    )
    print(
        "  state: parameters, gradients and Adam's two moments, 4 x 4 bytes per parameter "
        "(the same in both modes; it grows with K as the parameters do)"
    )
    header = (
        f"{'size':>5} {'K':>3} {'params':>9} {'state MB':>8} | {'peak MB':>8} {'passes':>8} "
        f"| {'peak MB':>8} {'passes':>8} | {'passes ratio':>12}"
    )
    print(f"{'':28}| {'ordinary':^17} | {'memory-saving':^17} |")
    print(header)
    activation: dict[tuple[int, int, str], float] = {}
    state: dict[tuple[int, int], float] = {}
    for size in args.sizes:
        for depth in args.depths:
            params = memory[size, depth, "ordinary"]["params"]
            state[size, depth] = 16 * params / 2**20
            row = f"{size:>3}^2 {depth:>3} {params:>9,} {state[size, depth]:>8.1f} |"
            for mode in MODES:
                m = memory[size, depth, mode]
                activation[size, depth, mode] = m["passes_mb"]
                row += f" {m['peak_mb']:>8.1f} {m['passes_mb']:>8.1f} |"
            ratio = activation[size, depth, "memory_saving"] / activation[size, depth, "ordinary"]
            print(row + f" {ratio:>12.3f}")

    print("\nTargets")
    verdicts = []
    for size in args.sizes:
        if 8 in args.depths and 64 in args.depths:
            a8, a64 = activation[size, 8, "memory_saving"], activation[size, 64, "memory_saving"]
            growth = a64 / a8 - 1
            verdict = "met" if growth < 0.10 else "missed"
            verdicts.append(verdict)
            print(
                f"  {size}x{size}: memory-saving activation memory (passes) from K=8 to K=64: "
                f"{a8:.1f} -> {a64:.1f} MB, {growth:+.1%} (target < +10%: {verdict})"
            )
            p8 = memory[size, 8, "memory_saving"]["peak_mb"]
            p64 = memory[size, 64, "memory_saving"]["peak_mb"]
            print(
                f"  {size}x{size}: memory-saving process peak from K=8 to K=64: {p8:.0f} -> "
                f"{p64:.0f} MB ({p64 / p8 - 1:+.1%}), of which parameters, gradients and Adam "
                f"state {state[size, 64] - state[size, 8]:+.0f} MB"
            )
        depths = args.depths
        ordinary = [activation[size, d, "ordinary"] for d in depths]
        slope, intercept = _fit_line(depths, ordinary)
        residual = max(
            abs(v - (slope * d + intercept)) for d, v in zip(depths, ordinary, strict=True)
        )
        print(
            f"  {size}x{size}: ordinary activation memory ~ {intercept:.1f} + {slope:.2f} MB x K "
            f"(largest deviation from the line {residual:.1f} MB): "
            f"{'about linear' if residual < 0.1 * max(ordinary) else 'not linear'}"
        )

    print(f"\nStep time ({args.rounds} rounds of {args.steps} steps per mode, order rotated)")
    print(
        f"{'size':>5} {'K':>3} | {'ordinary ms':>11} {'saving ms':>10} | {'ratio median [min, max]':>26}"
    )
    ratios_all = []
    for size in args.sizes:
        for depth in args.depths:
            t = _run_worker("time", args, size=size, depth=depth)
            ratios = [r["memory_saving"] / r["ordinary"] for r in t["rounds"]]
            ratios_all.append((size, depth, statistics.median(ratios)))
            ms_ord = 1e3 * statistics.median(r["ordinary"] for r in t["rounds"])
            ms_sav = 1e3 * statistics.median(r["memory_saving"] for r in t["rounds"])
            print(
                f"{size:>3}^2 {depth:>3} | {ms_ord:>11.1f} {ms_sav:>10.1f} | "
                f"{statistics.median(ratios):>8.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"
            )
    worst = max(r for _, _, r in ratios_all)
    verdict = "met" if worst <= 1.6 else "missed"
    print(f"  largest median ratio {worst:.2f} (target <= 1.6x: {verdict})")
    verdicts.append(verdict)
    print(f"\nTargets: {', '.join(verdicts)}")

    if args.figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.sizes), figsize=(5 * len(args.sizes), 3.8))
        axes = [axes] if len(args.sizes) == 1 else list(axes)
        for ax, size in zip(axes, args.sizes, strict=True):
            for mode, style in zip(MODES, ("o-", "s-"), strict=True):
                ax.plot(
                    args.depths,
                    [activation[size, d, mode] for d in args.depths],
                    style,
                    label=mode.replace("_", "-"),
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks(args.depths, [str(d) for d in args.depths])
            ax.set_xlabel("steps of flow per level K")
            ax.set_ylabel("forward + backward peak above start (MB)")
            ax.set_title(f"Glow, 2 levels, {size}x{size} digits, batch {args.batch}")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.figure.with_name(args.figure.stem + ".tmp" + args.figure.suffix)
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
