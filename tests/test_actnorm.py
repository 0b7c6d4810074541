"""ActNorm: harness, data-dependent initialisation, the initialised flag, log-det."""

from __future__ import annotations

import io
from typing import ClassVar

import pyro.distributions as dist
import pytest
import torch
from harness import TransformCase, TransformHarness

from pyro_dgm.transforms.actnorm import ActNorm, actnorm


class TestActNormHarness(TransformHarness):
    CASES: ClassVar[list[TransformCase]] = [
        TransformCase("vector", lambda: actnorm(4), (4,), data_init=True),
        TransformCase("image", lambda: actnorm(2, event_dim=3), (2, 4, 3), data_init=True),
        TransformCase("vector_sampled_first", lambda: actnorm(3), (3,)),
        TransformCase("sequence", lambda: ActNorm(3, event_dim=2), (3, 5), data_init=True),
    ]


def _reloaded(module: ActNorm, fresh: ActNorm) -> ActNorm:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


def test_initialisation_standardises_the_first_batch() -> None:
    t = actnorm(4)
    x = 1.5 + 2.0 * torch.randn(2000, 4, dtype=torch.float64)
    z = t.inv(x)
    assert bool(t.initialized)
    assert z.mean(0).abs().max() < 1e-6
    assert (z.std(0, correction=0) - 1).abs().max() < 1e-6
    # the parameters are the batch statistics, independently computed
    assert torch.allclose(t.loc.double(), x.mean(0), atol=1e-5)
    assert torch.allclose(t.log_scale.double(), x.std(0, correction=0).log(), atol=1e-5)
    assert torch.allclose(t.loc, torch.full((4,), 1.5), atol=0.15)
    assert torch.allclose(t.log_scale.exp(), torch.full((4,), 2.0), atol=0.15)


def test_initialisation_is_per_feature() -> None:
    mean = torch.tensor([1.5, -3.0, 0.0, 10.0])
    std = torch.tensor([2.0, 0.5, 1.0, 5.0])
    t = actnorm(4)
    z = t.inv(mean + std * torch.randn(500, 4))
    assert z.mean(0).abs().max() < 1e-5
    assert (z.std(0, correction=0) - 1).abs().max() < 1e-5


def test_image_initialisation_uses_batch_and_spatial_statistics() -> None:
    channel_mean = torch.tensor([1.5, -2.0, 4.0]).reshape(3, 1, 1)
    channel_std = torch.tensor([2.0, 0.3, 1.0]).reshape(3, 1, 1)
    x = channel_mean + channel_std * torch.randn(16, 3, 5, 6, dtype=torch.float64)
    t = actnorm(3, event_dim=3)
    z = t.inv(x)
    assert z.mean((0, 2, 3)).abs().max() < 1e-6
    # std(z) = std / (std + eps): 1 - 3.3e-6 for the channel of std 0.3
    assert (z.std((0, 2, 3), correction=0) - 1).abs().max() < 1e-5
    per_channel = x.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(t.loc.double(), per_channel.mean(1), atol=1e-5)
    assert torch.allclose(t.log_scale.exp().double(), per_channel.std(1, correction=0), atol=1e-5)


def test_log_det_closed_form_and_sign() -> None:
    """Generative direction x = z e^l + mu: log|det| = H W sum(l); scoring subtracts it."""
    t = actnorm(2, event_dim=3).double()
    with torch.no_grad():
        t.loc.copy_(torch.tensor([0.3, -1.0]))
        t.log_scale.copy_(torch.tensor([0.5, -0.2]))
    t.initialized.fill_(True)
    z = torch.randn(7, 2, 4, 3, dtype=torch.float64)
    x = t(z)
    expected_x = z * torch.tensor([0.5, -0.2]).exp().reshape(2, 1, 1) + torch.tensor(
        [0.3, -1.0]
    ).reshape(2, 1, 1)
    assert torch.allclose(x, expected_x.double())
    ladj = t.log_abs_det_jacobian(z, x)
    assert ladj.shape == (7,)
    assert torch.allclose(ladj, torch.full((7,), 4 * 3 * (0.5 - 0.2), dtype=torch.float64))
    base = dist.Normal(torch.zeros(2, 4, 3, dtype=torch.float64), 1.0).to_event(3)
    lp = dist.TransformedDistribution(base, [t]).log_prob(x.clone())
    assert torch.allclose(lp, base.log_prob(z) - 4 * 3 * 0.3)


def test_second_batch_does_not_reinitialise() -> None:
    t = actnorm(3)
    t.inv(1.5 + 2.0 * torch.randn(100, 3))
    loc, log_scale = t.loc.clone(), t.log_scale.clone()
    t.inv(-7.0 + 0.1 * torch.randn(100, 3))
    assert torch.equal(t.loc, loc) and torch.equal(t.log_scale, log_scale)


def test_sampling_first_keeps_the_identity_and_marks_initialised() -> None:
    t = actnorm(3)
    assert not bool(t.initialized)
    z = torch.randn(10, 3)
    assert torch.equal(t(z), z)
    assert bool(t.initialized)
    t.inv(5.0 + torch.randn(100, 3))  # data seen later does not move the layer
    assert torch.equal(t.loc, torch.zeros(3)) and torch.equal(t.log_scale, torch.zeros(3))


def test_state_dict_round_trip_preserves_initialisation() -> None:
    t = actnorm(2, event_dim=3)
    t.inv(1.5 + 2.0 * torch.randn(8, 2, 4, 4))
    assert "initialized" in t.state_dict()
    fresh = _reloaded(t, actnorm(2, event_dim=3))
    assert bool(fresh.initialized)
    assert torch.equal(fresh.loc, t.loc) and torch.equal(fresh.log_scale, t.log_scale)
    fresh.inv(-3.0 + torch.randn(8, 2, 4, 4))  # no second initialisation after a reload
    assert torch.equal(fresh.loc, t.loc) and torch.equal(fresh.log_scale, t.log_scale)


def test_loading_an_uninitialised_state_rearms_initialisation() -> None:
    t = actnorm(3)
    t.inv(torch.randn(50, 3))
    _reloaded(actnorm(3), t)  # load a never-initialised state into t
    assert not bool(t.initialized)
    t.inv(4.0 + 3.0 * torch.randn(200, 3))
    assert torch.allclose(t.loc, torch.full((3,), 4.0), atol=0.6)


def test_gradients_flow_after_initialisation() -> None:
    t = actnorm(3)
    x = 1.0 + torch.randn(32, 3)
    base = dist.Normal(torch.zeros(3), 1.0).to_event(1)
    loss = -dist.TransformedDistribution(base, [t]).log_prob(x).mean()
    loss.backward()
    # at the data initialisation, z is standardised: the gradient of the mean NLL in loc
    # is -mean(z) e^-l = 0 and in log_scale is mean(z^2) - 1 = 0 (a stationary point)
    assert torch.allclose(t.loc.grad, torch.zeros(3), atol=1e-5)
    assert torch.allclose(t.log_scale.grad, torch.zeros(3), atol=1e-5)
    t.zero_grad()
    loss = -dist.TransformedDistribution(base, [t]).log_prob(x + 1.0).mean()
    loss.backward()
    assert (t.loc.grad.abs() > 0.1).all()


def test_errors() -> None:
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="num_features"):
            ActNorm(bad)
    with pytest.raises(ValueError, match="event_dim"):
        ActNorm(3, event_dim=0)
    with pytest.raises(ValueError, match="eps"):
        ActNorm(3, eps=-1.0)
    t = actnorm(3, event_dim=3)
    with pytest.raises(ValueError, match="3 features at dimension -3"):
        t.inv(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match="at least 2 values per feature"):
        actnorm(3).inv(torch.randn(1, 3))
    with pytest.raises(ValueError, match="NaN"):
        actnorm(2).inv(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    assert not bool(actnorm(2).initialized)


def test_constant_feature_gets_a_finite_scale() -> None:
    t = actnorm(2)
    x = torch.stack([torch.randn(10), torch.full((10,), 3.0)], dim=-1)
    z = t.inv(x)
    assert torch.isfinite(z).all() and torch.isfinite(t.log_scale).all()
    assert torch.equal(z[:, 1], torch.zeros(10))
