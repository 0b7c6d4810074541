"""Do the papers' orderings hold on digits? A flow prior (Chen et al., 2017) and an IAF
posterior (Kingma et al., 2016) against the standard VAE, over seeds, with the ELBO surgery
and the active units that say why where they do not.

Four VAEs per setting, with the same convolutional encoder and decoder, optimizer, training
budget and early stopping (``pyro_dgm/cli/defaults.py``'s VAE settings): standard (normal
prior, diagonal Gaussian posterior), + flow prior, + IAF posterior, + both. Settings:
binarized digits (``y >= 8``, Bernoulli) and the 17 levels (discretized logistic), latent
2 and 16, the whole training split (1,257 images). On the TEST split (360 images): the
importance-weighted bound with K draws (Burda et al., 2016), the ELBO (the mean of the
same K log-weights), the active units (Burda et al.'s ``Var_x E_q[z_u] > 0.01``), and the
ELBO surgery (Hoffman & Johnson, 2016): average KL = I_q[x, z] + KL(q_agg || p), on the
test split (``I_q <= log 360``; a share of ``log N`` above 0.9 means the split is
saturated, and the marginal KL is then overestimated).

The summary gives each variant's difference to the standard VAE of the same seed,
mean ± sd over seeds, and on how many seeds the variant is better: the ordering "holds"
where it is better on every seed.

    python benchmarks/vae_orderings.py --threads 1 --jobs 2 --seeds 0 1 2 --budget 600
    python benchmarks/vae_orderings.py --smoke
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import platform
import statistics
import time
import warnings

import pyro
import torch
from tqdm import tqdm
from vae import build_vae, data_sets  # the VAEs and digits of benchmarks/vae.py

import pyro_dgm
from pyro_dgm import diagnostics, infer
from pyro_dgm.cli.defaults import training_defaults
from pyro_dgm.infer.metrics import HeavyTailWarning

VARIANTS = {  # name: (prior, posterior)
    "standard": ("normal", "gaussian"),
    "+ flow prior": ("flow", "gaussian"),
    "+ IAF posterior": ("normal", "iaf"),
    "+ both": ("flow", "iaf"),
}
VAE_DEFAULTS = training_defaults("vae")


def run_one(data_name: str, latent_dim: int, variant: str, seed: int, args) -> dict:
    torch.set_num_threads(args.threads)
    data, likelihood = {name: (d, lik) for name, d, lik in data_sets()}[data_name]
    prior, posterior = VARIANTS[variant]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae = build_vae(data, likelihood, prior, posterior, latent_dim, args)
    start = time.perf_counter()
    history = infer.fit(
        vae.model,
        vae.guide,
        data,
        epochs=args.epochs,
        batch_size=VAE_DEFAULTS.batch_size,
        lr=VAE_DEFAULTS.lr,
        patience=VAE_DEFAULTS.patience,
        weight_decay=VAE_DEFAULTS.weight_decay,
        ema=VAE_DEFAULTS.ema,
        max_seconds=args.budget,
        progress=False,
        seed=seed,
    )
    train_seconds = time.perf_counter() - start
    pyro.set_rng_seed(seed + 1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeavyTailWarning)  # the k-hat summary is in the row
        result = infer.importance_log_likelihood(
            vae.model, vae.guide, data.test, num_samples=args.num_samples
        )
        units = diagnostics.active_units(vae, data.test, warn=False)
        warnings.simplefilter("ignore", diagnostics.SaturatedMutualInformationWarning)
        surgery = diagnostics.elbo_surgery(vae.model, vae.guide, data.test)
    iw = result.summary()
    return {
        "data": data_name,
        "latent_dim": latent_dim,
        "variant": variant,
        "seed": seed,
        "nll": -iw.nats,
        "neg_elbo": -float(result.log_weights.mean(0).mean()),
        "active_units": units.count,
        "kl": surgery.kl,
        "mutual_information": surgery.mutual_information,
        "mi_share": surgery.mutual_information / surgery.max_mutual_information,
        "marginal_kl": surgery.marginal_kl,
        "k_median": float(result.pareto_k.median()),
        "best_epoch": history.best_epoch,
        "epochs": len(history.epoch),
        "stop_reason": history.stop_reason,
        "train_seconds": train_seconds,
        "score_seconds": time.perf_counter() - start,
    }


def _mean_sd(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--latent-dims", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--data", nargs="+", default=["binarized", "levels"])
    parser.add_argument("--budget", type=float, default=40.0, help="training seconds per run")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000, help="K of the IW bound")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--context-dim", type=int, default=128)
    parser.add_argument("--flow-layers", type=int, default=4, help="prior layers, posterior steps")
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--smoke", action="store_true", help="two epochs, K = 8, one seed")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.num_samples, args.seeds, args.budget = 2, 8, [0], 10.0
    torch.set_num_threads(args.threads)
    print(
        f"pyro_dgm {pyro_dgm.__version__} | torch {torch.__version__} | pyro {pyro.__version__} "
        f"| python {platform.python_version()} | threads {args.threads} x {args.jobs} jobs | "
        f"seeds {args.seeds}"
    )
    print(
        f"digits, 1,257 training images; training budget {args.budget:g} s, epochs <= "
        f"{args.epochs}, lr {VAE_DEFAULTS.lr:g}, batch {VAE_DEFAULTS.batch_size}, patience "
        f"{VAE_DEFAULTS.patience}, weight decay {VAE_DEFAULTS.weight_decay:g} (AdamW), EMA "
        f"{VAE_DEFAULTS.ema:g}; K = {args.num_samples}; channels {args.channels}, flow "
        f"layers/steps {args.flow_layers}"
    )
    jobs = [
        (d, z, v, s)
        for d in args.data
        for z in args.latent_dims
        for v in VARIANTS
        for s in args.seeds
    ]
    runs: dict[tuple, dict] = {}
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
        futures = {pool.submit(run_one, *job, args): job for job in jobs}
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(jobs), desc="runs"):
            r = runs[futures[future]] = future.result()
            tqdm.write(
                f"{r['data']} | latent {r['latent_dim']} | {r['variant']} | seed {r['seed']} | "
                f"NLL {r['nll']:.2f} | -ELBO {r['neg_elbo']:.2f} | active {r['active_units']} | "
                f"best epoch {r['best_epoch']}/{r['epochs']} ({r['stop_reason']}) | train "
                f"{r['train_seconds']:.0f} s"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([runs[job] for job in jobs], f, indent=1)
    k = args.num_samples
    print(
        f"\n| data | latent | variant | test NLL, IW K={k} | -ELBO | NLL - standard | better "
        "on seeds | active units | avg KL | I_q / log N | marginal KL | median k-hat | best "
        "epoch / epochs |"
    )
    print("|" + "---|" * 13)
    for d in args.data:
        for z in args.latent_dims:
            for v in VARIANTS:
                rows = [runs[d, z, v, s] for s in args.seeds]
                base = [runs[d, z, "standard", s]["nll"] for s in args.seeds]
                diff = [r["nll"] - b for r, b in zip(rows, base, strict=True)]
                better = "" if v == "standard" else f"{sum(x < 0 for x in diff)}/{len(diff)}"
                print(
                    f"| {d} | {z} | {v} | {_mean_sd([r['nll'] for r in rows])} | "
                    f"{_mean_sd([r['neg_elbo'] for r in rows])} | "
                    f"{'' if v == 'standard' else _mean_sd(diff)} | {better} | "
                    f"{_mean_sd([r['active_units'] for r in rows], 1)} | "
                    f"{_mean_sd([r['kl'] for r in rows])} | "
                    f"{_mean_sd([r['mi_share'] for r in rows])} | "
                    f"{_mean_sd([r['marginal_kl'] for r in rows])} | "
                    f"{_mean_sd([r['k_median'] for r in rows])} | "
                    + ", ".join(f"{r['best_epoch']}/{r['epochs']}" for r in rows)
                    + " |"
                )


if __name__ == "__main__":
    main()
