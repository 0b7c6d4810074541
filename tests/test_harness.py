"""The harness is proven on Pyro's own flows (they pass) and on broken transforms (they fail)."""

from __future__ import annotations

import pyro.distributions.transforms as pyro_T
import pytest
import torch
from harness import (
    TransformCase,
    TransformHarness,
    check_gradients,
    check_inverse,
    check_log_det,
)
from pyro.distributions import TransformModule, constraints
from torch import Tensor

from pyro_dgm import transforms as T


class TestPyroFlowsPassTheHarness(TransformHarness):
    CASES = [
        TransformCase("affine_autoregressive", lambda: T.affine_autoregressive(4), (4,)),
        TransformCase(
            "affine_autoregressive_stable",
            lambda: T.affine_autoregressive(4, stable=True),
            (4,),
        ),
        TransformCase("spline_autoregressive", lambda: pyro_T.spline_autoregressive(3), (3,)),
        TransformCase("affine_coupling", lambda: pyro_T.affine_coupling(4), (4,)),
        TransformCase("planar", lambda: pyro_T.planar(3), (3,), inverse=False),
        TransformCase("spline_coupling", lambda: pyro_T.spline_coupling(4), (4,)),
        TransformCase(
            "conditional_affine_autoregressive",
            lambda: T.conditional_affine_autoregressive(4, 2),
            (4,),
            context_dim=2,
        ),
        TransformCase(
            "conditional_affine_coupling",
            lambda: pyro_T.conditional_affine_coupling(4, 2),
            (4,),
            context_dim=2,
        ),
        TransformCase(
            "conditional_planar",
            lambda: pyro_T.conditional_planar(3, 2),
            (3,),
            context_dim=2,
            inverse=False,
        ),
    ]


def test_harness_catches_pyros_float64_inverse_trap() -> None:
    """Pyro's own AffineAutoregressive cannot invert in float64 without a global dtype change;
    the harness must see it (pyro_dgm's subclass above passes the same check)."""
    for stable in (False, True):
        case = TransformCase(
            "pyro_affine_autoregressive",
            lambda stable=stable: pyro_T.affine_autoregressive(4, stable=stable),
            (4,),
        )
        check_inverse(case, torch.float32)
        with pytest.raises(RuntimeError, match="dtype"):
            check_inverse(case, torch.float64)
    assert torch.get_default_dtype() == torch.float32


class _ElementwiseAffine(TransformModule):
    """y = exp(a) * x + b, with optional deliberate defects."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, dim: int, defect: str | None = None) -> None:
        super().__init__(cache_size=1)
        self.log_scale = torch.nn.Parameter(torch.zeros(dim))
        self.shift = torch.nn.Parameter(torch.zeros(dim))
        self.defect = defect

    def _call(self, x: Tensor) -> Tensor:
        return x * self.log_scale.exp() + self.shift

    def _inverse(self, y: Tensor) -> Tensor:
        x = (y - self.shift) * torch.exp(-self.log_scale)
        return x + 1e-3 if self.defect == "inverse" else x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        ladj = self.log_scale.expand(x.shape).sum(-1)
        if self.defect == "log_det_sign":
            return -ladj
        if self.defect == "log_det_missing_term":
            return self.log_scale[1:].expand(x.shape[:-1] + (x.shape[-1] - 1,)).sum(-1)
        return ladj


def _case(defect: str | None) -> TransformCase:
    return TransformCase(f"affine_{defect}", lambda: _ElementwiseAffine(3, defect), (3,))


def test_correct_elementwise_affine_passes() -> None:
    check_inverse(_case(None), torch.float64)
    check_log_det(_case(None))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_harness_fails_a_wrong_inverse(dtype: torch.dtype) -> None:
    with pytest.raises(AssertionError, match="inverse"):
        check_inverse(_case("inverse"), dtype)


@pytest.mark.parametrize("defect", ["log_det_sign", "log_det_missing_term"])
def test_harness_fails_a_wrong_log_det(defect: str) -> None:
    with pytest.raises(AssertionError, match="brute force"):
        check_log_det(_case(defect))


def test_harness_fails_a_parameter_without_gradient() -> None:
    def factory() -> _ElementwiseAffine:
        t = _ElementwiseAffine(3)
        t.unused = torch.nn.Parameter(torch.zeros(2))
        return t

    with pytest.raises(AssertionError, match="unused"):
        check_gradients(TransformCase("unused_param", factory, (3,)))
