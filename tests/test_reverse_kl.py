"""Reverse KL: flows as guides of unnormalized densities, and inside Pyro's autoguides."""

from __future__ import annotations

import math
from functools import partial

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormalizingFlow

from pyro_dgm import transforms as T
from pyro_dgm.flows import IAF
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
