"""One process of tests/test_distributed.py, launched by torchrun: the same fit call
that a single process makes, on torch.distributed (gloo).

Modes: ``train`` (two epochs with a checkpoint, then one more epoch resumed from a copy
of it; parameters written after each phase), ``fail`` (rank 1's model raises at its
third step), ``loader`` (the data as a DataLoader).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pyro
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset

from pyro_dgm import datasets, infer
from pyro_dgm.flows import MAF
from pyro_dgm.models import FlowModel

torch.set_num_threads(1)


def build() -> FlowModel:
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    return FlowModel(MAF(2, num_layers=2, hidden_dims=[8, 8]))


def data() -> torch.Tensor:
    return datasets.two_moons(200, seed=1)


SETTINGS = {"epochs": 2, "batch_size": 40, "validation": 0.2, "seed": 0, "progress": False}


def params(pair: FlowModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pair.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "fail", "loader"])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    rank = int(os.environ["RANK"])
    pair = build()
    if args.mode == "train":
        checkpoint = args.out / "checkpoint.pt"
        history = infer.fit(pair.model, pair.guide, data(), checkpoint=checkpoint, **SETTINGS)
        torch.save({"params": params(pair), "history": history.to_dict()},
                   args.out / f"phase_a_rank{rank}.pt")  # fmt: skip
        dist.barrier()
        if rank == 0:
            shutil.copy(checkpoint, args.out / "checkpoint_a.pt")
        dist.barrier()
        resumed = args.out / f"resumed_rank{rank}.pt"
        shutil.copy(args.out / "checkpoint_a.pt", resumed)
        infer.fit(pair.model, pair.guide, data(), checkpoint=resumed, **{**SETTINGS, "epochs": 1})
        torch.save({"params": params(pair)}, args.out / f"phase_b_rank{rank}.pt")
    elif args.mode == "loader":
        train = DataLoader(TensorDataset(data()), batch_size=20, shuffle=True)
        history = infer.fit(pair.model, pair.guide, train, validation=None, epochs=2,
                            progress=False)  # fmt: skip
        torch.save({"params": params(pair), "history": history.to_dict()},
                   args.out / f"loader_rank{rank}.pt")  # fmt: skip
    else:
        calls = {"n": 0}

        def model(x: torch.Tensor) -> None:
            calls["n"] += 1
            if rank == 1 and calls["n"] == 3:
                raise RuntimeError("rank 1 fails on purpose")
            pair.model(x)

        infer.fit(model, pair.guide, data(), **SETTINGS)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
