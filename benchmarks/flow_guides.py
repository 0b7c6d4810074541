"""Flow guides for SVI on a hierarchical model whose log Z is exact: the gap between
log Z and the ELBO (and the importance-weighted bound) per group, for an amortized
IAF, spline and zuko NSF guide trained alike.

The model (a Gaussian hierarchy, so that the evidence is closed-form): 64 groups, each
with a 3-D latent mean and 5 observations of it,

    z_g ~ N(0, S),   x_gj | z_g ~ N(z_g, s^2 I_3),   j = 1..5,

with a fixed correlated S (unit variances, correlations 0.8, -0.5, -0.3) and s = 1.
Integrating z_g out, vec(x_g) ~ N(0, 1 1^T (x) S + s^2 I_15), so log Z = sum_g log p(x_g)
is exact. The data are drawn once (seed 0) and are the same for every guide and seed.

Every guide is amortized: a conditional flow over z_g whose context is the group's 15
observations, trained by ``infer.fit`` (Adam, ``--lr``, all 64 groups per step,
``--particles`` vectorized ELBO particles per step) for ``--steps`` steps:

* ``iaf``: ``flows.IAF(3, L, [H, H], context_dim=15)`` (pyro_dgm's, with a reversing
  permutation between layers);
* ``spline``: Pyro's ``conditional_spline_autoregressive`` (rational-quadratic, 8 bins
  on [-5, 5]) x L, permutations
  between, in a ``flows.Flow``;
* ``nsf``: ``zuko.flows.NSF(3, context=15, transforms=L, hidden_features=[H, H])``
  through the bridge (``flows.ZukoFlow``).

L = ``--layers``, H = ``--hidden``. Scored with 2,000 ELBO particles and the IWAE
bound at K = 1,000 per group, 3 seeds; reported per group as mean +/- sd over the
seeds. Target (issue 21): the best guide's gap at most half the NSF's.

    python benchmarks/flow_guides.py --threads 1          # a few minutes
    python benchmarks/flow_guides.py --smoke              # seconds, numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.infer import Trace_ELBO
from torch import nn

import pyro_dgm
from pyro_dgm import flows, infer
from pyro_dgm.models.energy import FlowGuide
from pyro_dgm.utils.zuko_import import import_zuko

GROUPS, PER_GROUP, DIM, NOISE = 64, 5, 3, 1.0


def prior_scale_tril() -> torch.Tensor:
    corr = torch.tensor([[1.0, 0.8, -0.5], [0.8, 1.0, -0.3], [-0.5, -0.3, 1.0]])
    return torch.linalg.cholesky(corr)


def model(x: torch.Tensor) -> None:
    scale_tril = prior_scale_tril().to(x)
    with pyro.plate("groups", len(x)):
        z = pyro.sample(
            "z", dist.MultivariateNormal(torch.zeros(DIM).to(x), scale_tril=scale_tril)
        )
        pyro.sample("x", dist.Normal(z.unsqueeze(-2), NOISE).to_event(2), obs=x)


def exact_log_z(x: torch.Tensor) -> torch.Tensor:
    """log p(x_g) per group: vec(x_g) ~ N(0, 1 1^T (x) S + s^2 I)."""
    s = prior_scale_tril().double()
    cov_z = s @ s.T
    cov = torch.kron(torch.ones(PER_GROUP, PER_GROUP, dtype=torch.float64), cov_z)
    cov = cov + NOISE**2 * torch.eye(PER_GROUP * DIM, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(PER_GROUP * DIM).double(), cov)
    return mvn.log_prob(x.double().reshape(len(x), -1))


def simulate(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(GROUPS, DIM, generator=g) @ prior_scale_tril().T
    return z.unsqueeze(-2) + NOISE * torch.randn(GROUPS, PER_GROUP, DIM, generator=g)


def spline_flow(layers: int, hidden: int, context_dim: int) -> flows.Flow:
    parts: list = []
    for i in range(layers):
        if i:
            parts.append(T.Permute(torch.tensor([2, 0, 1])))
        parts.append(
            T.conditional_spline_autoregressive(
                DIM, context_dim, hidden_dims=[hidden, hidden], count_bins=8, bound=5.0
            )
        )
    return flows.Flow(parts, event_shape=(DIM,))


def build_guide(kind: str, layers: int, hidden: int) -> FlowGuide:
    context = nn.Flatten(-2)  # the group's 15 observations
    c = PER_GROUP * DIM
    if kind == "iaf":
        flow = flows.IAF(DIM, num_layers=layers, hidden_dims=[hidden, hidden], context_dim=c)
    elif kind == "spline":
        flow = spline_flow(layers, hidden, c)
    elif kind == "nsf":
        zuko = import_zuko()
        flow = flows.ZukoFlow(
            zuko.flows.NSF(DIM, context=c, transforms=layers, hidden_features=[hidden, hidden])
        )
    else:
        raise ValueError(f"guide must be iaf, spline or nsf, got {kind!r}")
    return FlowGuide(flow, name="z", context=context, plate="groups")


def score(guide: FlowGuide, x: torch.Tensor, log_z: torch.Tensor, args) -> dict:
    """The gaps per group: log Z minus the ELBO (mean of many draws), minus IWAE(K)."""
    with torch.no_grad():
        elbo = infer.importance_log_likelihood(
            model, guide, x, num_samples=args.elbo_particles, pareto_k_threshold=None
        )
        iwae = infer.importance_log_likelihood(
            model, guide, x, num_samples=args.num_samples, pareto_k_threshold=None
        )
    gap = log_z - elbo.log_weights.mean(0)
    return {
        "gap_elbo": float(gap.mean()),
        "gap_elbo_worst_group": float(gap.max()),
        "gap_iwae": float((log_z - iwae.values).mean()),
        "median_pareto_k": float(iwae.pareto_k.nanmedian()),
    }


def run(kind: str, seed: int, x: torch.Tensor, log_z: torch.Tensor, args) -> list[dict]:
    """Train one guide for the largest of ``args.steps`` steps, scored at each of them;
    with ``--ema``, one run per step count, scored with its averaged parameters (which
    ``fit`` loads at the end)."""
    if args.ema:
        return [r for steps in args.steps for r in _train(kind, seed, x, log_z, args, [steps])]
    return _train(kind, seed, x, log_z, args, args.steps)


def _train(
    kind: str, seed: int, x: torch.Tensor, log_z: torch.Tensor, args, steps: list[int]
) -> list[dict]:
    pyro.clear_param_store()
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)
    guide = build_guide(kind, args.layers, args.hidden)
    loss = Trace_ELBO(
        num_particles=args.particles, vectorize_particles=args.particles > 1, max_plate_nesting=1
    )
    scored: list[dict] = []
    start = time.perf_counter()
    paused = 0.0

    def record(steps_done: int) -> None:
        nonlocal paused
        begin = time.perf_counter()
        scored.append(
            {
                "guide": kind,
                "seed": seed,
                "steps": steps_done,
                "train_seconds": begin - start - paused,
                **score(guide, x, log_z, args),
            }
        )
        paused += time.perf_counter() - begin

    def checkpoint(history) -> None:
        # fit may report the last epoch twice: score each step count once
        done = any(r["steps"] == history.steps for r in scored)
        if not args.ema and history.steps in steps and not done:
            record(history.steps)

    infer.fit(
        model,
        guide,
        x,
        validation=None,
        epochs=max(steps),
        batch_size=len(x),
        loss=loss,
        lr=args.lr,
        patience=None,
        ema=args.ema,
        seed=seed,
        progress=False,
        on_epoch_end=checkpoint,
    )
    if args.ema:  # the averaged parameters, which fit loads at the end
        record(max(steps))
    params = sum(p.numel() for p in guide.parameters())
    return [dict(r, params=params) for r in scored]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", default="300,1500", help="scored after these steps")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--particles", type=int, default=8, help="ELBO particles per step")
    parser.add_argument("--guides", default="iaf,spline,nsf")
    parser.add_argument(
        "--ema",
        type=float,
        default=None,
        help="evaluate an exponential moving average of the guide's parameters (fit's ema)",
    )
    parser.add_argument("--elbo-particles", type=int, default=2000)
    parser.add_argument("--num-samples", type=int, default=1000, help="K of the IWAE bound")
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.elbo_particles, args.num_samples, args.seeds = "2,5", 20, 60, "0"
    args.steps = sorted({int(s) for s in str(args.steps).split(",")})
    torch.set_num_threads(args.threads)
    zuko = import_zuko()
    seeds = [int(s) for s in args.seeds.split(",")]
    guides = args.guides.split(",")
    print(
        f"pyro_dgm {pyro_dgm.__version__} | pyro {pyro.__version__} | torch {torch.__version__} "
        f"| zuko {zuko.__version__} | python {platform.python_version()}"
    )
    print(
        f"threads {torch.get_num_threads()} | seeds {seeds} (data seed 0) | scored at steps "
        f"{args.steps} "
        f"| lr {args.lr:g} | EMA {args.ema or 'off'} | ELBO particles/step {args.particles} "
        f"| layers {args.layers} "
        f"| hidden {args.hidden}x2 | scored with {args.elbo_particles} ELBO draws, "
        f"IWAE K={args.num_samples}"
    )
    x = simulate(0)
    log_z = exact_log_z(x)
    print(
        f"model: {GROUPS} groups x {PER_GROUP} observations of a {DIM}-D latent mean, noise "
        f"{NOISE}; exact log Z = {float(log_z.sum()):.3f} ({float(log_z.mean()):.3f} per group)"
    )
    print()
    runs = []
    for kind in guides:
        for seed in seeds:
            for r in run(kind, seed, x, log_z, args):
                runs.append(r)
                print(
                    f"  {kind:6s} seed {seed} step {r['steps']:5d}: gap {r['gap_elbo']:.4f} "
                    f"(worst group {r['gap_elbo_worst_group']:.3f}), IWAE gap "
                    f"{r['gap_iwae']:.4f}, median k-hat {r['median_pareto_k']:.2f}, "
                    f"{r['train_seconds']:.1f} s training",
                    flush=True,
                )

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        return f"{statistics.mean(values):.4f} ± {sd:.4f}"

    print("\nnats per group (log Z - bound), mean ± sd over the seeds")
    header = (
        f"{'guide':8s} {'steps':>6s} {'params':>7s} {'ELBO gap':>17s} {'IWAE gap':>17s} "
        f"{'train s':>8s}"
    )
    print(header)
    print("-" * len(header))
    for steps in args.steps:
        means = {}
        for kind in guides:
            rows = [r for r in runs if r["guide"] == kind and r["steps"] == steps]
            means[kind] = statistics.mean(r["gap_elbo"] for r in rows)
            print(
                f"{kind:8s} {steps:6d} {rows[0]['params']:7d} "
                f"{spread([r['gap_elbo'] for r in rows]):>17s} "
                f"{spread([r['gap_iwae'] for r in rows]):>17s} "
                f"{statistics.mean(r['train_seconds'] for r in rows):8.1f}"
            )
        if "nsf" in means and len(means) > 1:
            best = min((k for k in means if k != "nsf"), key=means.get)
            ratio = means[best] / means["nsf"]
            verdict = "meets" if ratio <= 0.5 else "MISSES"
            print(
                f"  at {steps} steps the best guide, {best}, leaves {means[best]:.4f} = "
                f"{ratio:.2f} x NSF's {means['nsf']:.4f} (target <= 0.5): {verdict}"
            )
    if args.json:
        out = {
            "benchmark": "flow_guides",
            "versions": {
                "pyro_dgm": pyro_dgm.__version__,
                "pyro": pyro.__version__,
                "torch": torch.__version__,
                "zuko": zuko.__version__,
                "python": platform.python_version(),
            },
            "threads": torch.get_num_threads(),
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "log_z_per_group": float(log_z.mean()),
            "runs": runs,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(path)


if __name__ == "__main__":
    main()
