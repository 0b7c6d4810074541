"""The elementwise affine stage whose parameters are read when it is applied: the shared
harness, the Gaussian it makes of a standard normal, and a held distribution."""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch
from harness import TransformCase, TransformHarness

from pyro_dgm.flows import FlowDistribution
from pyro_dgm.models.vae.posteriors import FlowPosterior, GaussianPosterior
from pyro_dgm.transforms import ConditionedAffine, conditional_affine


class TestConditionalAffineHarness(TransformHarness):
    CASES = [
        TransformCase(
            "conditional_affine", lambda: conditional_affine(3, 2, hidden_dims=[8]), (3,), 2
        ),
        TransformCase(
            "conditional_affine_one_dim", lambda: conditional_affine(1, 4, [6]), (1,), 4
        ),
    ]


def test_a_standard_normal_through_it_is_the_gaussian_of_its_parameters() -> None:
    loc, scale = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64)
    base = dist.Normal(torch.zeros(5, 3, dtype=torch.float64), 1.0).to_event(1)
    d = FlowDistribution(base, [ConditionedAffine(lambda: (loc, scale + 0.1))])
    z = torch.randn(7, 5, 3, dtype=torch.float64)
    expected = dist.Normal(loc, scale + 0.1).to_event(1).log_prob(z)
    torch.testing.assert_close(d.log_prob(z), expected)
    x = d.rsample((2,))
    torch.testing.assert_close(
        d.log_prob(x), dist.Normal(loc, scale + 0.1).to_event(1).log_prob(x), atol=1e-12, rtol=0
    )


def test_the_parameters_are_read_when_the_map_is_applied() -> None:
    params = [torch.zeros(2), torch.ones(2)]
    t = ConditionedAffine(lambda: tuple(params))
    z = torch.ones(2)
    assert torch.equal(t._call(z), torch.ones(2))
    params[0] = torch.full((2,), 3.0)
    assert torch.equal(t._call(z), torch.full((2,), 4.0))


def test_the_flow_posteriors_gaussian_stage_is_the_gaussian_posterior() -> None:
    """With no flow layer, the flow posterior is the Gaussian posterior of its head."""
    torch.manual_seed(0)
    flow_post = FlowPosterior(4, 3, []).double()
    gaussian = GaussianPosterior(4, 3).double()
    gaussian.load_state_dict(flow_post.state_dict())
    h = torch.randn(6, 4, dtype=torch.float64)
    z = torch.randn(2, 6, 3, dtype=torch.float64)
    torch.testing.assert_close(flow_post(h).log_prob(z), gaussian(h).log_prob(z))
    assert flow_post(h).batch_shape == (6,) and flow_post(h).event_shape == (3,)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="input_dim"):
        conditional_affine(0, 2)
    with pytest.raises(ValueError, match="min_scale"):
        conditional_affine(2, 2, min_scale=-1.0)
