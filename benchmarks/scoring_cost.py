"""Scoring cost: the importance-weighted bound (K = 1000) of multi-scale RealNVP with
variational dequantization on the digits test split, against the pair's training time.

The pair is the one of ``benchmarks/dequantization.py --flow image-realnvp --layers 3
--hidden 64 --lr 1e-3`` (2 levels, 3 couplings per stage, 64 hidden channels, one
residual block; the default noise flow and features), trained by ``infer.fit`` with
early stopping on the validation split. Then the test split is scored with
``infer.importance_log_likelihood`` three ways:

* ``before``: the chunking of the previous release, 128 points x 100 draws per pass,
  NCHW convolutions (``batch_size=128, chunk_size=100, channels_last=False``: this
  draws exactly what the previous code drew, for the same seed);
* ``budget``: chunk sizes from the memory budget (default 32 MiB), NCHW;
* ``after``: the defaults (budget chunks, channels-last convolutions on the CPU).

Each row prints seconds, microseconds per draw and point, the ratio to the training
time, and the bound (nats and bits/dim): the three are the same estimator, so their
bounds differ only by Monte Carlo error.

    python benchmarks/scoring_cost.py --threads 1            # about 10 minutes
    python benchmarks/scoring_cost.py --smoke                # seconds, numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pyro
import torch

import pyro_dgm
from pyro_dgm import datasets, flows, infer
from pyro_dgm.models.dequantization import VariationalDequantization
from pyro_dgm.utils.zuko_import import import_zuko


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=400.0, help="training cap")
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    zuko = import_zuko()
    print(
        f"pyro_dgm {pyro_dgm.__version__} | pyro {pyro.__version__} | torch {torch.__version__} "
        f"| zuko {zuko.__version__} | python {platform.python_version()}"
    )
    data = datasets.digits()
    test = data.test
    epochs, max_seconds, num_samples = 100_000, args.max_seconds, args.num_samples
    if args.smoke:
        test, epochs, max_seconds, num_samples = test[:8], 1, 30.0, 20
    print(f"threads {torch.get_num_threads()} | seed {args.seed} | K {num_samples}")
    print("load averages at start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"digits: train {len(data.train)}, validation {len(data.validation)}, test {len(test)}")

    pyro.clear_param_store()
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    flow = flows.MultiScaleRealNVP((1, 8, 8), 2, 3, 64, num_blocks=1)
    pair = VariationalDequantization(flow, 17, event_shape=(1, 8, 8), alpha=0.05, name="vd")
    history = infer.fit(
        pair.model,
        pair.guide,
        data,
        epochs=epochs,
        batch_size=64,
        lr=1e-3,
        patience=args.patience,
        max_seconds=max_seconds,
        seed=args.seed,
        progress=False,
    )
    train_seconds = history.seconds[-1]
    print(
        f"training: {train_seconds:.1f} s, {history.epoch[-1]} epochs, {history.steps} steps, "
        f"stopped early {history.stopped_early}"
    )

    settings = {
        "before": {"batch_size": 128, "chunk_size": 100, "channels_last": False},
        "budget": {"channels_last": False},
        "after": {},
    }
    rows = []
    header = f"{'scoring':8s} {'seconds':>8s} {'us/draw':>8s} {'x train':>8s} {'nats':>10s} "
    print("\n" + header + f"{'bits/dim':>9s}")
    for name, kwargs in settings.items():
        torch.manual_seed(args.seed + 1)
        start = time.perf_counter()
        result = infer.importance_log_likelihood(
            pair.model,
            pair.guide,
            test,
            num_samples=num_samples,
            pareto_k_threshold=None,
            **kwargs,
        )
        seconds = time.perf_counter() - start
        summary = result.summary()
        row = {
            "scoring": name,
            "settings": kwargs,
            "seconds": seconds,
            "us_per_draw": 1e6 * seconds / (num_samples * len(test)),
            "ratio_to_training": seconds / train_seconds,
            "nats": summary.nats,
            "stderr": summary.stderr,
            "bits_per_dim": summary.bits_per_dim,
        }
        rows.append(row)
        print(
            f"{name:8s} {seconds:8.1f} {row['us_per_draw']:8.1f} "
            f"{row['ratio_to_training']:8.2f} {summary.nats:10.3f} {summary.bits_per_dim:9.4f}",
            flush=True,
        )
    before, after = rows[0]["seconds"], rows[-1]["seconds"]
    print(
        f"\nspeed-up {before / after:.2f}x; scoring at {after / train_seconds:.2f}x the training "
        f"time (target <= 1)"
    )
    print("load averages at end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    if args.json:
        out = {
            "benchmark": "scoring_cost",
            "versions": {
                "pyro_dgm": pyro_dgm.__version__,
                "pyro": pyro.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "threads": torch.get_num_threads(),
            "seed": args.seed,
            "num_samples": num_samples,
            "test_points": len(test),
            "training": {
                "seconds": train_seconds,
                "epochs": history.epoch[-1],
                "steps": history.steps,
                "stopped_early": history.stopped_early,
            },
            "rows": rows,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(path)


if __name__ == "__main__":
    main()
