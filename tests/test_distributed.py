"""fit on torch.distributed: two gloo processes launched by torchrun train exactly as one
process does on the same global batches, resume anywhere, and stop together on failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

import pyro_dgm
from pyro_dgm import infer

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker as worker

WORKER = Path(__file__).parent / "distributed_worker.py"
pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch build has no torch.distributed"
)


def _torchrun(mode: str, out: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(pyro_dgm.__file__).parents[1]), str(WORKER.parent)]
        ),
        "PYRO_DGM_DIST_TIMEOUT": "60",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(WORKER), mode, str(out)]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 2e-5) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        torch.testing.assert_close(value, b[name], atol=tol, rtol=tol, msg=name)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distributed")
    result = _torchrun("train", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_two_ranks_hold_identical_parameters_equal_to_one_process(two_rank_run) -> None:
    rank0 = torch.load(two_rank_run / "phase_a_rank0.pt", weights_only=True)
    rank1 = torch.load(two_rank_run / "phase_a_rank1.pt", weights_only=True)
    _close(rank0["params"], rank1["params"], tol=0.0)  # identical on both ranks
    same = {k: v for k, v in rank0["history"].items() if k != "seconds"}
    assert same == {k: v for k, v in rank1["history"].items() if k != "seconds"}

    pair = worker.build()
    history = infer.fit(pair.model, pair.guide, worker.data(), **worker.SETTINGS)
    _close(worker.params(pair), rank0["params"])
    assert history.epoch == rank0["history"]["epoch"]
    for one, two in zip(history.train_loss, rank0["history"]["train_loss"], strict=True):
        assert one == pytest.approx(two, rel=1e-5)
    for one, two in zip(history.validation_loss, rank0["history"]["validation_loss"], strict=True):
        assert one == pytest.approx(two, rel=1e-5)
    assert history.best_epoch == rank0["history"]["best_epoch"]


def test_a_two_rank_checkpoint_resumes_in_one_process_with_the_same_next_epoch(
    two_rank_run, tmp_path
) -> None:
    assert not (two_rank_run / "resumed_rank1.pt.tmp").exists()
    resumed = tmp_path / "checkpoint.pt"
    resumed.write_bytes((two_rank_run / "checkpoint_a.pt").read_bytes())
    pair = worker.build()
    infer.fit(pair.model, pair.guide, worker.data(), checkpoint=resumed,
              **{**worker.SETTINGS, "epochs": 1})  # fmt: skip
    two_ranks = torch.load(two_rank_run / "phase_b_rank0.pt", weights_only=True)["params"]
    _close(worker.params(pair), two_ranks)
    saved = infer.load_checkpoint(resumed)
    assert saved.history.epoch == [1, 2, 3]


def test_only_rank_0_writes_the_checkpoint(two_rank_run) -> None:
    state = torch.load(two_rank_run / "checkpoint.pt", weights_only=True)
    assert state["history"]["epoch"] == [1, 2]
    assert sorted(p.name for p in two_rank_run.glob("*.tmp")) == []


def test_a_dataloader_is_sharded_with_a_distributed_sampler(tmp_path) -> None:
    result = _torchrun("loader", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "loader_rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "loader_rank1.pt", weights_only=True)
    _close(rank0["params"], rank1["params"], tol=0.0)
    # 200 points, 20 per batch and rank: 5 steps of 40 points per epoch
    assert rank0["history"]["steps"] == 10 == rank1["history"]["steps"]


def test_a_failing_rank_stops_the_group_with_a_clear_error(tmp_path) -> None:
    result = _torchrun("fail", tmp_path, timeout=120)  # a hang would time out here
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rank 1 fails on purpose" in output
    assert "DistributedError" in output and "rank 0 of 2 stops too" in output


def test_one_process_is_a_group_of_one() -> None:
    group = infer.distributed.process_group()
    assert (group.rank, group.world, group.is_main, group.active) == (0, 1, True, False)
    pyro.clear_param_store()
    assert group.sum([1.0, 2.0]) == [1.0, 2.0]
