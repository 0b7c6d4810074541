"""Checkpoints: read with weights_only=True, checked whole before anything is copied."""

from __future__ import annotations

import pytest
import torch

from pyro_dgm import infer
from pyro_dgm.infer.checkpoint import read_checkpoint


def _params(**shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {name: torch.full(shape, float(i)) for i, (name, shape) in enumerate(shapes.items())}


SIX = {"a": (2,), "b": (3,), "c": (2, 2), "d": (1,), "e": (4,), "f": (5,)}


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "checkpoint.pt"
    params = _params(**SIX)
    history = infer.History(epoch=[1, 2], train_loss=[2.0, 1.0], validation_loss=[2.5, 1.5])
    history.seconds, history.best_epoch = [0.1, 0.2], 2
    best = {n: p + 100 for n, p in params.items()}
    infer.save_checkpoint(path, params=params, history=history, best_params=best)
    return path


def _fresh() -> dict[str, torch.Tensor]:
    return {name: torch.full(shape, -7.0) for name, shape in SIX.items()}


def _untouched(params: dict[str, torch.Tensor]) -> bool:
    return all(bool((p == -7.0).all()) for p in params.values())


def test_round_trip_and_read_without_loading(saved) -> None:
    params = _fresh()
    loaded = infer.load_checkpoint(saved, params=params)
    assert all(
        torch.equal(params[n], torch.full(s, float(i))) for i, (n, s) in enumerate(SIX.items())
    )
    assert loaded.history.epoch == [1, 2] and loaded.best_params["a"][0] == 100
    read = read_checkpoint(saved)
    assert read.history.best_epoch == 2 and torch.equal(read.params["f"], params["f"])


@pytest.mark.parametrize(
    "change, match",
    [
        ({"f": torch.zeros(6)}, r"f has shape \(5,\)"),  # the last one: 5 of 6 were written
        ({"f": torch.zeros(5, dtype=torch.float64)}, "dtype torch.float32, expected"),
    ],
    ids=["shape", "dtype"],
)
def test_a_mismatch_writes_nothing(saved, change, match) -> None:
    params = _fresh() | {n: t.fill_(-7.0) for n, t in change.items()}
    with pytest.raises(ValueError, match=match):
        infer.load_checkpoint(saved, params=params)
    assert _untouched(params)


def test_mismatched_best_parameters_write_nothing(tmp_path) -> None:
    path = tmp_path / "c.pt"
    best = {n: torch.zeros(s) for n, s in SIX.items()} | {"c": torch.zeros(3)}
    infer.save_checkpoint(path, params=_params(**SIX), best_params=best)
    params = _fresh()
    with pytest.raises(ValueError, match="best parameter c has shape"):
        infer.load_checkpoint(path, params=params)
    assert _untouched(params)


def test_an_optimizer_that_does_not_fit_writes_nothing(tmp_path) -> None:
    path = tmp_path / "c.pt"
    params = _params(**SIX)
    saved_optimizer = torch.optim.Adam(list(params.values()))
    infer.save_checkpoint(path, params=params, optimizer=saved_optimizer)
    fresh = _fresh()
    other = torch.optim.Adam([fresh["a"]])  # one parameter in its group, not six
    with pytest.raises(ValueError, match="optimizer state does not fit"):
        infer.load_checkpoint(path, params=fresh, optimizer=other)
    assert _untouched(fresh)


class Stranger:
    """Not a tensor: ``torch.load(weights_only=True)`` refuses to unpickle it."""


@pytest.mark.parametrize("damage", ["truncated", "stranger", "bytes", "missing"])
def test_files_torch_cannot_read_are_a_value_error_naming_them(saved, damage) -> None:
    if damage == "truncated":
        saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    elif damage == "stranger":
        torch.save({"format": "pyro_dgm.checkpoint/1", "params": Stranger()}, saved)
    elif damage == "bytes":
        saved.write_bytes(b"not a checkpoint at all")
    else:
        saved.unlink()
    params = _fresh()
    for load in (
        lambda: infer.load_checkpoint(saved, params=params),
        lambda: read_checkpoint(saved),
    ):
        with pytest.raises(ValueError, match=str(saved)):
            load()
    assert _untouched(params)


@pytest.mark.parametrize(
    "state, match",
    [
        ({"format": "pyro_dgm.checkpoint/1", "params": [1, 2]}, "'params' should map names"),
        ({"format": "pyro_dgm.checkpoint/1", "params": {}, "history": {"x": 1}}, "history"),
        ({"format": "pyro_dgm.checkpoint/1", "params": {}, "metadata": 3}, "metadata"),
    ],
)
def test_a_damaged_structure_is_a_value_error(tmp_path, state, match) -> None:
    path = tmp_path / "c.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=match):
        infer.load_checkpoint(path, params={})
