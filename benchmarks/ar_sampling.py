r"""Autoregressive models: naive against cached sampling, and (``--train``) exact test bits/dim.

Part 1, sampling speed (always). Untrained networks: a network's sampling time does not
depend on its weights, so no training is needed to time it. Both samplers draw the same
samples for the same seed (checked and printed). Contenders, one run, side by side:

* PixelCNN on 28x28 single-channel images with 256 levels (``PixelCNN((1, 28, 28), 256)``,
  default sizes: 32 feature maps, 5 gated blocks, mixture of 5 logistics);
* WaveNet on sequences of length 1,024 with 256 levels (``WaveNet(1024, 256)``, default
  sizes: 32 residual channels, 10 layers with dilations 1..512, receptive field 1,024).

``naive`` reruns the whole network for every position (784 and 1,024 passes); ``cached``
computes each activation once (Ramachandran et al., 2017). The table reports seconds
per batch, samples/second and the speed-up (target >= 10x for both).

Part 2, ``--train``: through :func:`pyro_dgm.infer.fit` with early stopping on the
validation split and a wall-clock budget per model,

* PixelCNN on ``digits()`` (8x8, 17 levels): exact test bits/dim, samples/second of both
  samplers, in one table beside the best flow and VAE figures of
  benchmarks/results/2026-11-23 (their bits/dim are quoted from those files, not re-run;
  their samples/second are measured here on networks of the same kind and size);
* WaveNet on ``digit_sequences()`` and on ``waveforms()``: exact test bits/dim.

Commands (from the repository root, virtual environment active, idle machine):

    python benchmarks/ar_sampling.py --threads 1                   # part 1
    python benchmarks/ar_sampling.py --threads 1 --train           # parts 1 and 2
    python benchmarks/ar_sampling.py --threads 1 --train --smoke   # a few seconds: checks only
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable

import pyro
import torch
import zuko

import pyro_dgm
from pyro_dgm import flows, infer, models
from pyro_dgm.cli.defaults import training_defaults
from pyro_dgm.datasets import digits
from pyro_dgm.datasets.sequences import digit_sequences, waveforms
from pyro_dgm.distributions.autoregressive import PixelCNN, WaveNet
from pyro_dgm.models.autoregressive import AutoregressiveModel
from pyro_dgm.models.dequantization import UniformDequantization

# quoted from benchmarks/results/2026-11-23 (digits test split, 120 s / 60 s budgets)
REFERENCE_BITS = {
    "flow: nsf + var. deq. (NSF timed)": (1.9451, "IWAE(K=1000)", "dequantization.txt"),
    "VAE: levels + flow prior": (1.8155, "IWAE(K=1000)", "vae.txt"),
}


def _versions() -> str:
    return (
        f"pyro_dgm {pyro_dgm.__version__} | pyro {pyro.__version__} | torch {torch.__version__}"
        f" | zuko {zuko.__version__} | python {platform.python_version()} | "
        f"{platform.machine()}"
    )


def _time(fn: Callable[[], torch.Tensor], repeats: int = 1) -> tuple[float, torch.Tensor]:
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def sampling_speed(args: argparse.Namespace) -> None:
    side, length, levels = (10, 128, 256) if args.smoke else (28, 1024, 256)
    contenders = {
        f"PixelCNN {side}x{side}x1": PixelCNN((1, side, side), levels),
        f"WaveNet T={length}": WaveNet(length, levels),
    }
    print(f"\nSAMPLING (untrained networks, batch {args.batch}, {levels} levels)")
    header = (
        f"{'model':<20} {'positions':>9} {'naive s':>9} {'cached s':>9} {'naive /s':>9} "
        f"{'cached /s':>9} {'speed-up':>9} {'same':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, module in contenders.items():
        d = module()
        d.sample((1,))  # warm-up

        def draw(method: str, d=d) -> torch.Tensor:
            torch.manual_seed(args.seed)
            return d.sample((args.batch,), method=method)

        naive_s, naive = _time(lambda draw=draw: draw("naive"))
        cached_s, cached = _time(lambda draw=draw: draw("cached"), repeats=3)
        same = torch.equal(naive, cached)
        positions = math.prod(module.event_shape)
        print(
            f"{name:<20} {positions:>9} {naive_s:>9.2f} {cached_s:>9.3f} "
            f"{args.batch / naive_s:>9.2f} {args.batch / cached_s:>9.1f} "
            f"{naive_s / cached_s:>8.1f}x {'yes' if same else 'NO':>5}"
        )
    print(
        "(naive: one full network pass per position; cached: per-layer caches, each "
        "activation computed once; target speed-up >= 10x)"
    )


def _fit(pair: AutoregressiveModel, data, args: argparse.Namespace) -> tuple[float, dict]:
    start = time.perf_counter()
    history = infer.fit(
        pair.model,
        pair.guide,
        data,
        epochs=2 if args.smoke else args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        max_seconds=args.budget,
        seed=args.seed,
        progress=False,
    )
    seconds = time.perf_counter() - start
    test = data.test[:32] if args.smoke else data.test
    ll = infer.log_likelihood(pair.model, pair.guide, test)
    assert ll.bound == "exact"
    info = {
        "bits": ll.bits_per_dim,
        "stderr_bits": ll.stderr / (ll.num_dims * math.log(2)),
        "seconds": seconds,
        "epochs": len(history.epoch),
        "best_epoch": history.best_epoch,
        "early": history.stopped_early,
        "params": sum(p.numel() for p in pair.parameters()),
    }
    return ll.bits_per_dim, info


def _samples_per_second(sample: Callable[[int], torch.Tensor], n: int) -> float:
    sample(2)  # warm-up
    torch.manual_seed(0)
    seconds, _ = _time(lambda: sample(n))
    return n / seconds


def train(args: argparse.Namespace) -> None:
    n = 8 if args.smoke else 64
    print(
        f"\nTRAINING (fit: batch {args.batch_size}, lr {args.lr}, patience {args.patience}, "
        f"budget {args.budget} s per model, max {args.epochs} epochs; exact test bits/dim)"
    )
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    data = digits(seed=args.seed)
    pixelcnn = AutoregressiveModel(
        PixelCNN((1, 8, 8), 17, hidden_channels=args.hidden, num_layers=args.layers),
        name="pixelcnn",
    )
    bits, info = _fit(pixelcnn, data, args)
    cached = _samples_per_second(lambda k: pixelcnn.sample(k, method="cached"), n)
    naive = _samples_per_second(lambda k: pixelcnn.sample(k, method="naive"), n)
    # samples/second of the flow and VAE kinds of the reference rows (same sizes as there)
    flow = UniformDequantization(
        flows.ZukoFlow(zuko.flows.NSF(64, transforms=5, hidden_features=[128, 128])),
        17,
        event_shape=(1, 8, 8),
    )
    vae = models.VAE.for_images(
        (1, 8, 8), 16, prior="flow", likelihood="discretized_logistic", num_levels=17
    )
    flow_rate = _samples_per_second(lambda k: flow.sample(k), n)
    vae_rate = _samples_per_second(lambda k: vae.sample(k), n)

    num_test = 32 if args.smoke else len(data.test)
    print(
        f"\ndigits TEST ({num_test} images, 64 dims, 17 levels; uniform coding {math.log2(17):.3f})"
    )
    header = (
        f"{'model':<34} {'bits/dim':>9} {'bound':>13} {'samples/s':>10} {'train s':>8} "
        f"{'epochs':>7} {'params':>8}"
    )
    print(header)
    print("-" * len(header))
    row = f"{'PixelCNN (cached sampler)':<34} {bits:>9.4f} {'exact':>13} {cached:>10.1f}"
    print(f"{row} {info['seconds']:>8.1f} {info['epochs']:>7} {info['params']:>8}")
    print(f"{'PixelCNN (naive sampler)':<34} {bits:>9.4f} {'exact':>13} {naive:>10.1f}")
    for (label, (ref, bound, source)), rate in zip(
        REFERENCE_BITS.items(), (flow_rate, vae_rate), strict=True
    ):
        print(f"{label:<34} {ref:>9.4f} {bound:>13} {rate:>10.1f}   (bits/dim from {source})")
    print(
        f"PixelCNN +/- {info['stderr_bits']:.4f} bits/dim (stderr over test images); best "
        f"epoch {info['best_epoch']}, early stop {info['early']}"
    )

    print("\nWaveNet TEST (exact bits/dim)")
    header = (
        f"{'data':<18} {'T':>5} {'levels':>6} {'R':>5} {'bits/dim':>9} {'log2 L':>7} "
        f"{'train s':>8} {'epochs':>7}"
    )
    print(header)
    print("-" * len(header))
    sequences = {
        "digit_sequences": digit_sequences(seed=args.seed),
        "waveforms": waveforms(
            num_sequences=40 if args.smoke else 1000,
            length=128 if args.smoke else 1024,
            seed=args.seed,
        ),
    }
    for name, seq in sequences.items():
        pyro.clear_param_store()
        length = seq.event_shape[-1]
        layers = max(1, math.ceil(math.log2(length)))
        wavenet = AutoregressiveModel(
            WaveNet(seq.event_shape, seq.num_levels, args.hidden, num_layers=layers),
            name=f"wavenet_{name}",
        )
        bits, info = _fit(wavenet, seq, args)
        print(
            f"{name:<18} {length:>5} {seq.num_levels:>6} {wavenet.module.receptive_field:>5} "
            f"{bits:>9.4f} {math.log2(seq.num_levels):>7.3f} {info['seconds']:>8.1f} "
            f"{info['epochs']:>7}"
        )


# the training settings of pyro-dgm fit (pyro_dgm/cli/defaults.py): the tool and this
# benchmark train alike
AR_DEFAULTS = training_defaults("autoregressive")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=4, help="samples per sampling run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--train", action="store_true", help="also part 2 (training)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per model")
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--patience", type=int, default=AR_DEFAULTS.patience)
    parser.add_argument("--batch-size", type=int, default=AR_DEFAULTS.batch_size)
    parser.add_argument("--lr", type=float, default=AR_DEFAULTS.lr)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=5)
    args = parser.parse_args()
    if args.smoke:
        args.budget = min(args.budget, 5.0)
    torch.set_num_threads(args.threads)
    print(_versions())
    print(f"threads {torch.get_num_threads()} | seed {args.seed} | smoke {args.smoke}")
    sampling_speed(args)
    if args.train:
        train(args)


if __name__ == "__main__":
    main()
