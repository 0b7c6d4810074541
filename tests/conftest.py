"""Test-wide set-up: seeds, a clean param store, validation on, Agg backend."""

import os

import matplotlib
import pyro
import pytest
import torch

import pyro_dgm  # noqa: F401  (first: test modules import zuko, which pyro_dgm contains)

matplotlib.use("Agg")
# tests are small: one thread avoids oversubscribing CI's two cores
torch.set_num_threads(1)
os.environ.setdefault("CI", "1")  # tutorials and the CLI take their smoke-test sizes


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the harness classes over their ``CASES``."""
    for fixture in ("transform_case", "distribution_case"):
        if fixture in metafunc.fixturenames:
            cases = metafunc.cls.CASES
            metafunc.parametrize(
                fixture,
                [pytest.param(c, marks=c.marks, id=c.name) for c in cases],
            )
