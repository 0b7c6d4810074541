"""Image flows on digits: pyro_dgm's multi-scale RealNVP and Glow (uniform and variational
dequantization) against zuko's MAF, NSF and RealNVP on the flattened pixels and normflows'
multi-scale Glow, under one wall-clock budget each.

Data: ``datasets.digits()`` (1x8x8, 17 levels; 1,257 train / 180 validation / 360 test).
Every contender models the same dequantized data, ``w = y + u``, ``u ~ U[0, 1)^64``,
through the same logit pre-processing (``LogitTransform(alpha)`` of ``w / 17``, with its
exact Jacobian), and stops early on the same validation split (``--patience`` epochs
without improvement, best parameters kept) or at ``--budget`` seconds.

* pyro_dgm trains through ``pyro_dgm.infer.fit`` with its model/guide pairs
  (``UniformDequantization`` / ``VariationalDequantization``, ``Trace_ELBO``);
* the peers train with a plain PyTorch loop of their own API (the fastest way to use
  them), on a fresh ``u`` each step.

Every contender is then scored on the held-out TEST split in bits/dim of the discrete data
with the importance-weighted bound with K noise samples (``IWAE(K)``; the uniform guide
for the peers, and the pair's own guide for pyro_dgm), and the ELBO where the guide is
pyro_dgm's. The script also scores pyro_dgm's uniformly dequantized Glow with the peers'
evaluator, as a check that both evaluators agree. Printed: test bits/dim, training images
per second, seconds to draw 1,000 samples (in the flow's own space, no pre-processing).

    python benchmarks/image_flows.py                     # full run: --budget 120, K=200
    python benchmarks/image_flows.py --budget 3 --num-samples 4 --smoke   # smoke test
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
import zuko
from torch import Tensor, nn

import pyro_dgm
from pyro_dgm import datasets, infer
from pyro_dgm.cli.defaults import training_defaults
from pyro_dgm.flows import MultiScaleFlow, MultiScaleGlow, MultiScaleRealNVP
from pyro_dgm.models import UniformDequantization, VariationalDequantization
from pyro_dgm.transforms import LogitTransform

SHAPE = (1, 8, 8)
DIM = 64


@dataclass
class Result:
    name: str
    params: int
    train_seconds: float
    epochs: int
    images: int
    stopped_early: bool
    bits: dict[str, float]
    sample_seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.images / self.train_seconds


# ---------------------------------------------------------------------------
# the shared pre-processing and the peers' evaluator
# ---------------------------------------------------------------------------


class Preprocessing:
    r"""``log p_W(w) = log p_Z(z) - log|dv/dz| - D log L`` with ``v = w / L`` and
    ``z = logit(alpha + (1 - 2 alpha) v)`` (the pairs' "logit" pre-processing)."""

    def __init__(self, num_levels: int, alpha: float) -> None:
        self.num_levels = num_levels
        self.logit = LogitTransform(alpha, event_dim=3)

    def to_flow_space(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log-det term)`` for dequantized images ``w`` of shape (N, 1, 8, 8)."""
        v = w / self.num_levels
        z = self.logit._inverse(v)
        correction = -self.logit.log_abs_det_jacobian(z, v) - DIM * math.log(self.num_levels)
        return z, correction


def iwae_bits_per_dim(
    log_p_z: Callable[[Tensor], Tensor],
    pre: Preprocessing,
    y: Tensor,
    num_samples: int,
    seed: int,
    chunk: int = 20,
) -> float:
    r"""The importance-weighted bound with the uniform guide, in bits/dim:
    :math:`\log P(y) \ge \log \frac1K \sum_k p_W(y + u_k)`, :math:`u_k \sim U[0,1)^D`."""
    g = torch.Generator().manual_seed(seed)
    y = y.float()
    rows = []
    with torch.no_grad():
        for start in range(0, num_samples, chunk):
            k = min(chunk, num_samples - start)
            w = y.unsqueeze(0) + torch.rand((k, *y.shape), generator=g)
            z, correction = pre.to_flow_space(w.reshape(-1, *SHAPE))
            rows.append((log_p_z(z) + correction).reshape(k, len(y)))
    log_w = torch.cat(rows)
    log_p = log_w.logsumexp(0) - math.log(num_samples)
    return -log_p.mean().item() / (DIM * math.log(2))


def train_raw(
    module: nn.Module,
    log_p_z: Callable[[Tensor], Tensor],
    pre: Preprocessing,
    data: datasets.Dataset,
    args: argparse.Namespace,
    lr: float,
) -> tuple[float, int, int, bool]:
    """A plain PyTorch loop: Adam, fresh uniform noise each step, early stopping on the
    validation split (one noise draw per evaluation, as fit's validation ELBO)."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    train, valid = data.train.float(), data.validation.float()
    best, best_state, stale, epoch, images = math.inf, None, 0, 0, 0
    start = time.perf_counter()
    stopped = False
    while time.perf_counter() - start < args.budget:
        epoch += 1
        for index in torch.randperm(len(train)).split(args.batch_size):
            w = train[index] + torch.rand_like(train[index])
            z, correction = pre.to_flow_space(w)
            loss = -(log_p_z(z) + correction).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(index)
            if time.perf_counter() - start > args.budget:
                break
        with torch.no_grad():
            z, correction = pre.to_flow_space(valid + torch.rand_like(valid))
            valid_loss = -(log_p_z(z) + correction).mean().item()
        if valid_loss < best:
            best, best_state, stale = valid_loss, copy.deepcopy(module.state_dict()), 0
        else:
            stale += 1
            if stale >= args.patience:
                stopped = True
                break
    seconds = time.perf_counter() - start
    if best_state is not None:
        module.load_state_dict(best_state)
    return seconds, epoch, images, stopped


def timed_sampling(draw: Callable[[int], Tensor], num: int = 1000) -> float:
    with torch.no_grad():
        draw(8)  # warm-up
        start = time.perf_counter()
        x = draw(num)
        seconds = time.perf_counter() - start
    assert x.shape[0] == num and torch.isfinite(x).all()
    return seconds


# ---------------------------------------------------------------------------
# contenders
# ---------------------------------------------------------------------------


def build_pyro_dgm_flow(kind: str, args: argparse.Namespace) -> MultiScaleFlow:
    if kind == "glow":
        return MultiScaleGlow(
            SHAPE,
            num_levels=args.levels,
            num_steps=args.glow_steps,
            hidden_channels=args.hidden_channels,
            num_blocks=1,
            checkerboard_steps=args.glow_checkerboard_steps,
        )
    return MultiScaleRealNVP(
        SHAPE,
        num_levels=args.levels,
        num_steps=args.realnvp_steps,
        hidden_channels=args.hidden_channels,
        num_blocks=1,
    )


def run_pyro_dgm(
    kind: str,
    dequantization: str,
    data: datasets.Dataset,
    args: argparse.Namespace,
    pre: Preprocessing,
) -> tuple[Result, nn.Module]:
    flow = build_pyro_dgm_flow(kind, args)
    pair_class = (
        UniformDequantization if dequantization == "uniform" else VariationalDequantization
    )
    pair = pair_class(flow, data.num_levels, event_shape=SHAPE, alpha=args.alpha, name=kind)
    history = infer.fit(
        pair.model,
        pair.guide,
        data,
        epochs=100_000,
        batch_size=args.batch_size,
        lr=args.lr_image,
        patience=args.patience,
        max_seconds=args.budget,
        seed=args.seed,
        progress=False,
    )
    with torch.no_grad():
        bounds = infer.likelihood_bounds(
            pair.model, pair.guide, data.test, num_samples=(args.num_samples,)
        )
    bits = {b.bound: b.bits_per_dim for b in bounds}
    name = f"pyro_dgm {'Glow' if kind == 'glow' else 'RealNVP'} + {dequantization}"
    result = Result(
        name,
        sum(p.numel() for p in pair.parameters()),
        history.seconds[-1],
        history.epoch[-1],
        history.steps * args.batch_size,  # the last batch of an epoch may be smaller
        history.stopped_early,
        bits,
        timed_sampling(lambda n: flow().sample((n,))),
    )
    if dequantization == "uniform":  # the peers' evaluator on our flow: must agree
        result.extra["peer evaluator"] = iwae_bits_per_dim(
            lambda z: flow().log_prob(z), pre, data.test, args.num_samples, args.seed + 1
        )
    return result, pair


def zuko_flow(kind: str, args: argparse.Namespace) -> zuko.flows.Flow:
    hidden = [args.hidden] * 2
    if kind == "MAF":
        return zuko.flows.MAF(DIM, transforms=args.zuko_transforms, hidden_features=hidden)
    if kind == "NSF":
        return zuko.flows.NSF(DIM, transforms=args.zuko_transforms, hidden_features=hidden)
    return zuko.flows.RealNVP(DIM, transforms=2 * args.zuko_transforms, hidden_features=hidden)


def run_zuko(
    kind: str, data: datasets.Dataset, args: argparse.Namespace, pre: Preprocessing
) -> Result:
    flow = zuko_flow(kind, args)

    def log_p_z(z: Tensor) -> Tensor:
        return flow().log_prob(z.flatten(1))

    seconds, epochs, images, stopped = train_raw(flow, log_p_z, pre, data, args, args.lr_vector)
    return Result(
        f"zuko {kind} (flattened)",
        sum(p.numel() for p in flow.parameters()),
        seconds,
        epochs,
        images,
        stopped,
        {
            f"IWAE(K={args.num_samples})": iwae_bits_per_dim(
                log_p_z, pre, data.test, args.num_samples, args.seed + 1
            )
        },
        timed_sampling(lambda n: flow().sample((n,))),
    )


def normflows_glow(args: argparse.Namespace) -> nn.Module:
    """normflows' multi-scale Glow, built as in its Glow example (coarsest level first),
    with unconditional diagonal Gaussian bases for the factored-out latents."""
    import normflows as nf

    levels, channels = args.levels, SHAPE[0]
    q0, merges, flows = [], [], []
    for i in range(levels):
        steps = [
            nf.flows.GlowBlock(
                channels * 2 ** (levels + 1 - i), args.hidden_channels, split_mode="channel"
            )
            for _ in range(args.glow_steps)
        ]
        flows.append([*steps, nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (channels * 2 ** (levels - i), SHAPE[1] // 2 ** (levels - i))
        else:
            latent = (channels * 2 ** (levels + 1), SHAPE[1] // 2**levels)
        q0.append(nf.distributions.DiagGaussian((latent[0], latent[1], latent[1])))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def run_normflows(data: datasets.Dataset, args: argparse.Namespace, pre: Preprocessing) -> Result:
    model = normflows_glow(args)
    with torch.no_grad():  # normflows' ActNorm initialises on its first batch too
        z, _ = pre.to_flow_space(data.train[:256].float() + torch.rand(256, *SHAPE))
        model.log_prob(z, None)

    def log_p_z(z: Tensor) -> Tensor:
        return model.log_prob(z, None)

    seconds, epochs, images, stopped = train_raw(model, log_p_z, pre, data, args, args.lr_image)
    return Result(
        "normflows Glow (multi-scale)",
        sum(p.numel() for p in model.parameters()),
        seconds,
        epochs,
        images,
        stopped,
        {
            f"IWAE(K={args.num_samples})": iwae_bits_per_dim(
                log_p_z, pre, data.test, args.num_samples, args.seed + 1
            )
        },
        timed_sampling(lambda n: model.sample(n)[0]),
    )


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def report(results: list[Result], args: argparse.Namespace) -> None:
    key = f"IWAE(K={args.num_samples})"
    best = min(r.bits[key] for r in results)
    print(f"\nTEST bits/dim of the discrete digits (lower is better), bound {key}")
    header = (
        f"{'model':36s} {'params':>8s} {'ELBO':>7s} {key:>12s} {'ratio':>6s} "
        f"{'train s':>8s} {'epochs':>6s} {'early':>6s} {'img/s':>8s} {'1k samples s':>13s}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        elbo = next((v for k, v in r.bits.items() if k.startswith("ELBO")), None)
        elbo_text = f"{elbo:7.4f}" if elbo is not None else f"{'-':>7s}"
        print(
            f"{r.name:36s} {r.params:8d} {elbo_text} {r.bits[key]:12.4f} "
            f"{r.bits[key] / best:6.3f} {r.train_seconds:8.1f} {r.epochs:6d} "
            f"{'yes' if r.stopped_early else 'no':>6s} {r.images_per_second:8.0f} "
            f"{r.sample_seconds:13.3f}"
        )
    for r in results:
        for name, value in r.extra.items():
            print(f"check: {r.name}, {name}: {value:.4f} bits/dim (pair's own: {r.bits[key]:.4f})")
    ours = [r for r in results if r.name.startswith("pyro_dgm")]
    peers = [r for r in results if not r.name.startswith("pyro_dgm")]
    if ours and peers:
        best_ours = min(ours, key=lambda r: r.bits[key])
        best_peer = min(peers, key=lambda r: r.bits[key])
        verdict = "below" if best_ours.bits[key] < best_peer.bits[key] else "NOT below"
        print(
            f"best pyro_dgm: {best_ours.name} {best_ours.bits[key]:.4f}; best peer: "
            f"{best_peer.name} {best_peer.bits[key]:.4f} -> pyro_dgm is {verdict} every peer"
        )


def figure(pairs: dict[str, nn.Module], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pyro_dgm import plots

    fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3.6))
    for ax, (name, pair) in zip(
        list(axes) if len(pairs) > 1 else [axes], pairs.items(), strict=True
    ):
        torch.manual_seed(0)
        plots.image_grid(pair.sample(36), num_levels=17, ax=ax, title=name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"samples figure: {path}")


# the training settings of pyro-dgm fit (pyro_dgm/cli/defaults.py): the tool and this
# benchmark train alike
IMAGE, VECTOR = training_defaults("image_flow"), training_defaults("flow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=200, help="K of the IWAE bound")
    parser.add_argument("--alpha", type=float, default=0.05, help="logit margin")
    parser.add_argument("--batch-size", type=int, default=IMAGE.batch_size)
    parser.add_argument("--patience", type=int, default=IMAGE.patience)
    parser.add_argument("--levels", type=int, default=2, help="levels of the image flows")
    parser.add_argument("--glow-steps", type=int, default=4, help="Glow steps per level")
    parser.add_argument(
        "--glow-checkerboard-steps",
        type=int,
        default=0,
        help="full-resolution checkerboard couplings before Glow's first squeeze (default 0: "
        "the paper's Glow, as normflows builds it; pyro-dgm fit uses 2)",
    )
    parser.add_argument("--realnvp-steps", type=int, default=3, help="RealNVP couplings/stage")
    parser.add_argument("--hidden-channels", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128, help="zuko hidden units")
    parser.add_argument("--zuko-transforms", type=int, default=5)
    parser.add_argument("--lr-image", type=float, default=IMAGE.lr, help="image flows' lr")
    parser.add_argument("--lr-vector", type=float, default=VECTOR.lr, help="zuko flows' lr")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated subset of: glow-uniform, glow-variational, realnvp-uniform, "
        "realnvp-variational, zuko-maf, zuko-nsf, zuko-realnvp, normflows-glow",
    )
    parser.add_argument("--figure", type=Path, default=None, help="PNG of pyro_dgm's samples")
    parser.add_argument("--smoke", action="store_true", help="tiny networks, for a quick check")
    args = parser.parse_args()
    if args.smoke:
        args.hidden_channels, args.hidden, args.glow_steps, args.zuko_transforms = 8, 16, 1, 1

    torch.set_num_threads(args.threads)
    import normflows

    print(
        f"pyro_dgm {pyro_dgm.__version__} | pyro {pyro.__version__} | torch {torch.__version__} "
        f"| zuko {zuko.__version__} | normflows {normflows.__version__} "
        f"| python {platform.python_version()}"
    )
    print(
        f"threads {torch.get_num_threads()} | seed {args.seed} | budget {args.budget:g} s each "
        f"| batch {args.batch_size} | patience {args.patience} | alpha {args.alpha} "
        f"| IWAE K={args.num_samples}"
    )
    print(
        f"image flows: {args.levels} levels, Glow K={args.glow_steps} (+"
        f"{args.glow_checkerboard_steps} checkerboard couplings), RealNVP "
        f"{args.realnvp_steps} couplings/stage, {args.hidden_channels} channels, "
        f"lr {args.lr_image:g} | zuko: {args.zuko_transforms} transforms "
        f"({2 * args.zuko_transforms} for RealNVP) of {args.hidden}x2, lr {args.lr_vector:g}"
    )
    data = datasets.digits()
    print(
        f"digits: train {len(data.train)}, validation {len(data.validation)}, "
        f"test {len(data.test)}, {data.num_levels} levels; uniform coding "
        f"{math.log2(data.num_levels):.3f} bits/dim\n"
    )
    pre = Preprocessing(data.num_levels, args.alpha)
    contenders: dict[str, Callable[[], Result]] = {}
    pairs: dict[str, nn.Module] = {}

    def ours(kind: str, deq: str) -> Callable[[], Result]:
        def go() -> Result:
            result, pair = run_pyro_dgm(kind, deq, data, args, pre)
            pairs[result.name.removeprefix("pyro_dgm ")] = pair
            return result

        return go

    for kind in ("glow", "realnvp"):
        for deq in ("uniform", "variational"):
            contenders[f"{kind}-{deq}"] = ours(kind, deq)
    for kind in ("MAF", "NSF", "RealNVP"):
        contenders[f"zuko-{kind.lower()}"] = lambda kind=kind: run_zuko(kind, data, args, pre)
    contenders["normflows-glow"] = lambda: run_normflows(data, args, pre)

    chosen = args.only.split(",") if args.only else list(contenders)
    unknown = sorted(set(chosen) - set(contenders))
    if unknown:
        raise SystemExit(f"--only: unknown contenders {unknown}; known: {sorted(contenders)}")
    results = []
    for key in chosen:
        pyro.clear_param_store()
        torch.manual_seed(args.seed)
        pyro.set_rng_seed(args.seed)
        result = contenders[key]()
        results.append(result)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.bits.items())
        print(
            f"  {result.name}: {shown} bits/dim ({result.train_seconds:.0f} s, "
            f"{result.epochs} epochs, {result.images_per_second:.0f} images/s)",
            flush=True,
        )
    report(results, args)
    if args.figure is not None and pairs:
        figure(pairs, args.figure)


if __name__ == "__main__":
    main()
