"""Reverse KL: flows as guides of unnormalized densities, and inside Pyro's autoguides."""

from __future__ import annotations

import math
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow
from torch import nn

from pyro_dgm import transforms as T
from pyro_dgm.flows import IAF, MAF
from pyro_dgm.models import EnergyModel, FlowGuide

PRECISION = torch.tensor([[2.0, 1.2], [1.2, 1.0]])
LOG_Z = math.log(2 * math.pi) - 0.5 * math.log(torch.linalg.det(PRECISION).item())


def gaussian_log_density(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * torch.einsum("...i,ij,...j->...", z, PRECISION, z)


def _elbo(model, guide, num_particles: int = 4000) -> float:
    loss = Trace_ELBO(num_particles=num_particles, vectorize_particles=True)
    with torch.no_grad():
        return -loss.loss(model, guide)


def test_iaf_guide_reaches_log_z_of_a_gaussian_energy() -> None:
    energy = EnergyModel(gaussian_log_density, event_shape=(2,))
    guide = FlowGuide(IAF(2, num_layers=2, hidden_dims=[16]))
    svi = SVI(
        energy.model,
        guide,
        pyro.optim.Adam({"lr": 1e-2}),
        Trace_ELBO(num_particles=32, vectorize_particles=True),
    )
    before = _elbo(energy.model, guide)
    for _ in range(600):
        svi.step()
    after = _elbo(energy.model, guide)
    assert before < after
    # the ELBO is log Z - KL(q || p): at most log Z, and close to it for an affine target
    assert after <= LOG_Z + 0.01
    assert after > LOG_Z - 0.05


def test_pyro_autonormalizingflow_trains_pyro_dgm_transforms() -> None:
    def model() -> None:
        pyro.sample("a", dist.Normal(torch.tensor([1.0, -2.0, 0.5]), 0.3).to_event(1))

    guide = AutoNormalizingFlow(model, partial(T.iterated, 2, T.affine_autoregressive))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO(num_particles=8))
    first = [svi.step() for _ in range(10)]
    store = pyro.get_param_store()
    names = [n for n in store.get_all_param_names() if "transform" in n]
    assert names, "the flow's parameters are not in the param store"
    before = {n: store[n].detach().clone() for n in names}
    last = [svi.step() for _ in range(300)][-20:]
    assert sum(last) / len(last) < sum(first) / len(first)
    assert all(not torch.equal(before[n], store[n]) for n in names)
    samples = torch.stack([guide()["a"] for _ in range(500)])
    assert torch.allclose(samples.mean(0), torch.tensor([1.0, -2.0, 0.5]), atol=0.15)


def test_an_amortized_flow_guide_takes_a_context_in_the_models_plate() -> None:
    """A hierarchical model (Pyro's flow-guide tutorial): a 2-D latent per group, 5 noisy
    observations per group; the guide is one conditional IAF amortized over the groups."""
    groups = torch.randn(16, 5, 2) + torch.randn(16, 1, 2) * 2

    def model(x: torch.Tensor) -> None:
        with pyro.plate("groups", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 2.0).to_event(1))
            pyro.sample("x", dist.Normal(z[:, None], 1.0).to_event(2), obs=x)

    guide = FlowGuide(
        IAF(2, num_layers=2, context_dim=2),
        context=lambda x: x.mean(1),  # the group mean: a sufficient statistic here
        plate="groups",
    )
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(groups) for _ in range(150)]
    assert sum(losses[-10:]) < sum(losses[:10])
    z = guide(groups)
    assert z.shape == (16, 2)
    # the posterior mean of group g is (5 / 4 * mean_g) / (5 + 1 / 4): the guide learnt it
    exact = groups.mean(1) * (5.0 / (5.0 + 0.25))
    draws = torch.stack([guide(groups) for _ in range(200)]).mean(0)
    assert (draws - exact).abs().mean() < 0.3

    net = nn.Linear(2, 3)
    amortized = FlowGuide(MAF(2, num_layers=1, context_dim=3), context=lambda x: net(x.mean(1)))
    assert amortized(groups).shape == (16, 2)
    with pytest.raises(ValueError, match="the flow is conditional; pass context="):
        FlowGuide(IAF(2, context_dim=2))
    with pytest.raises(ValueError, match="the flow takes no context"):
        FlowGuide(IAF(2), context=lambda x: x)
    with pytest.raises(ValueError, match="plate: a plate over the latent's rows needs context"):
        FlowGuide(IAF(2), plate="groups")
