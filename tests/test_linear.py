"""InvertibleLinear (Glow's LU and a QR parametrization): harness, factors, solves."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from harness import TransformCase, TransformHarness

from pyro_dgm.transforms.linear import InvertibleLinear, invertible_linear


class TestLinearHarness(TransformHarness):
    CASES: ClassVar[list[TransformCase]] = [
        TransformCase("lu", lambda: invertible_linear(4), (4,)),
        TransformCase("qr", lambda: invertible_linear(4, parametrization="qr"), (4,)),
        TransformCase("lu_bias", lambda: invertible_linear(5, bias=True), (5,)),
        TransformCase("qr_bias", lambda: InvertibleLinear(5, "qr", bias=True), (5,)),
    ]


def _perturbed(t: InvertibleLinear, std: float = 0.5) -> InvertibleLinear:
    with torch.no_grad():
        for p in t.parameters():
            p.add_(std * torch.randn_like(p))
    return t.double()


@pytest.mark.parametrize("parametrization", ["lu", "qr"])
def test_log_det_and_inverse_against_the_dense_matrix(parametrization: str) -> None:
    torch.manual_seed(0)
    t = _perturbed(InvertibleLinear(6, parametrization, bias=True))
    w = t.weight
    assert w.shape == (6, 6)
    logabsdet = torch.linalg.slogdet(w).logabsdet
    assert torch.allclose(t.log_abs_det, logabsdet, atol=1e-10)
    assert abs(logabsdet.item()) > 0.1  # the perturbation left the rotations
    x = torch.randn(3, 2, 6, dtype=torch.float64)
    y = t(x)
    assert torch.allclose(y, x @ w.T + t.bias, atol=1e-12)
    ladj = t.log_abs_det_jacobian(x, y)
    assert ladj.shape == (3, 2) and torch.allclose(ladj, logabsdet.expand(3, 2))
    expected = torch.linalg.solve(w, (y - t.bias).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(t._inverse(y), expected, atol=1e-10)
    assert torch.allclose(t.solve(y - t.bias), expected, atol=1e-10)
    assert torch.allclose(t._inverse(y), x, atol=1e-10)


def test_lu_factors_have_the_stated_structure() -> None:
    torch.manual_seed(1)
    t = _perturbed(InvertibleLinear(5, "lu"))
    p = t.permutation
    assert torch.equal(p.sum(0), torch.ones(5).double()) and torch.equal(p.sum(1), p.sum(0))
    assert set(p.unique().tolist()) == {0.0, 1.0}
    lower, upper = t._lu_factors()
    assert torch.equal(lower.diagonal(), torch.ones(5).double())
    assert torch.equal(lower, lower.tril()) and torch.equal(upper, upper.triu())
    assert torch.allclose(upper.diagonal().abs().log(), t.log_abs_diag)
    assert torch.equal(upper.diagonal().sign(), t.diag_sign)
    assert torch.allclose(t.weight, p @ lower @ upper)


def test_qr_factors_have_the_stated_structure() -> None:
    torch.manual_seed(2)
    t = InvertibleLinear(5, "qr").double()
    q0, _ = t._qr_factors()
    _perturbed(t)
    q, r = t._qr_factors()
    eye = torch.eye(5, dtype=torch.float64)
    for m in (q0, q):  # orthogonal to float64 rounding, though initialised in float32
        assert torch.allclose(m.T @ m, eye, atol=1e-13)
    assert not torch.allclose(q, q0, atol=0.1)  # the learnable rotation moved
    assert torch.equal(r, r.triu()) and (r.diagonal() > 0).all()
    assert torch.allclose(t.weight, q @ r)
    # Q is the product of the reflections I - 2 v v^T / v^T v, v_i = e_i + below-diagonal part
    v = t.reflectors.detach().tril(-1) + eye
    product = eye
    for i in range(5):
        vi = v[:, i : i + 1]
        product = product @ (eye - 2 * vi @ vi.T / (vi.T @ vi))
    assert torch.allclose(q, product, atol=1e-12)


@pytest.mark.parametrize("parametrization", ["lu", "qr"])
def test_initialised_as_a_random_rotation(parametrization: str) -> None:
    torch.manual_seed(3)
    t = InvertibleLinear(6, parametrization)
    w = t.weight
    assert torch.allclose(w @ w.T, torch.eye(6), atol=1e-5)
    assert abs(t.log_abs_det.item()) < 1e-5
    assert not torch.allclose(w.abs(), torch.eye(6), atol=0.1)  # not a mere permutation
    assert not torch.equal(w, InvertibleLinear(6, parametrization).weight)


@pytest.mark.parametrize("parametrization", ["lu", "qr"])
def test_stays_invertible_far_from_initialisation(parametrization: str) -> None:
    """A large move of the diagonal keeps W invertible (exp-parametrised diagonal):
    the log-det stays exact and the inverse stays right."""
    torch.manual_seed(4)
    t = InvertibleLinear(8, parametrization).double()
    with torch.no_grad():
        (t.log_abs_diag if parametrization == "lu" else t.log_diag).add_(-3.0)
    logabsdet = torch.linalg.slogdet(t.weight).logabsdet
    assert torch.allclose(t.log_abs_det, logabsdet) and logabsdet < -20
    x = torch.randn(100, 8, dtype=torch.float64)
    assert torch.allclose(t._inverse(t._call(x)), x, atol=1e-8)


def test_errors() -> None:
    with pytest.raises(ValueError, match="parametrization"):
        InvertibleLinear(3, "svd")
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="input_dim"):
            InvertibleLinear(bad)
    t = invertible_linear(3)
    with pytest.raises(ValueError, match="input_dim=3"):
        t(torch.randn(2, 4))
    with pytest.raises(ValueError, match="y must have last dimension"):
        t.inv(torch.randn(4))


def test_bias_is_optional_and_registered() -> None:
    assert invertible_linear(3).bias is None
    assert "bias" not in invertible_linear(3).state_dict()
    assert invertible_linear(3, bias=True).state_dict()["bias"].shape == (3,)
