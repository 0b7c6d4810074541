r"""Log-likelihoods in nats and bits per dimension, with the bound they come from named."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

__all__ = ["LogLikelihood", "bits_per_dim", "log_likelihood", "nats_to_bits_per_dim"]


def nats_to_bits_per_dim(nats: float | Tensor, num_dims: int) -> float | Tensor:
    r"""Convert a negative log-likelihood per data point (nats) to bits per dimension.

    .. math:: \mathrm{bpd} = \frac{-\log P(y)}{D \log 2}
    """
    if num_dims < 1:
        raise ValueError(f"num_dims must be a positive integer, got {num_dims}")
    return nats / (num_dims * math.log(2.0))


bits_per_dim = nats_to_bits_per_dim


@dataclass(frozen=True)
class LogLikelihood:
    """A log-likelihood estimate per data point, and what it is.

    Attributes:
        nats: Mean log-likelihood per data point (nats; a bound where ``bound`` says so).
        stderr: Standard error of that mean over the data points.
        bound: ``"exact"`` (no latent variable: the ELBO is the log-likelihood),
            ``"ELBO"``, or ``"IWAE(K=...)"``.
        num_dims: Dimensions per data point, for bits/dim.
        num_points: Number of data points averaged.
    """

    nats: float
    stderr: float
    bound: str
    num_dims: int
    num_points: int

    @property
    def bits_per_dim(self) -> float:
        """Negative log-likelihood in bits per dimension (an upper bound unless exact)."""
        return float(nats_to_bits_per_dim(-self.nats, self.num_dims))

    def __str__(self) -> str:
        return (
            f"log p = {self.nats:.4f} ± {self.stderr:.4f} nats ({self.bound}), "
            f"{self.bits_per_dim:.4f} bits/dim over {self.num_points} points"
        )


def _per_point_elbo(model: Callable, guide: Callable, batch: Tensor) -> tuple[Tensor, bool]:
    """ELBO of each point of ``batch`` from one guide sample, and whether the model has latents."""
    guide_trace = poutine.trace(guide).get_trace(batch)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
    total = batch.new_zeros(len(batch), dtype=torch.float64)
    has_latents = False
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        trace.compute_log_prob()
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            has_latents |= trace is model_trace and not site["is_observed"]
            log_prob = site["log_prob"]
            if log_prob.dim() == 0 or log_prob.shape[0] != len(batch):
                raise ValueError(
                    f"site {name!r} has log_prob shape {tuple(log_prob.shape)}: per-point "
                    f"likelihoods need every site inside a data plate of size {len(batch)} "
                    "on the leftmost batch dimension"
                )
            total += sign * log_prob.reshape(len(batch), -1).sum(-1).double()
    return total, has_latents


def log_likelihood(
    model: Callable,
    guide: Callable,
    data: Tensor,
    *,
    num_particles: int = 1,
    batch_size: int = 256,
) -> LogLikelihood:
    r"""The log-likelihood per data point: exact for a model without latent
    variables (a flow trained by maximum likelihood), else its ELBO bound
    averaged over ``num_particles`` guide samples.

    .. math:: \log p(x) \ge \mathbb{E}_{q(z|x)}[\log p(x, z) - \log q(z|x)]

    The model and guide must put every sample site inside a data plate over
    the first dimension of ``data`` (no subsampling), so that each point's
    ELBO is its own.
    """
    if len(data) == 0:
        raise ValueError("data is empty: nothing to evaluate")
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    values, exact = [], True
    with torch.no_grad():
        for batch in data.split(batch_size):
            elbo, has_latents = _per_point_elbo(model, guide, batch)
            exact = exact and not has_latents
            if has_latents:
                for _ in range(num_particles - 1):
                    elbo = elbo + _per_point_elbo(model, guide, batch)[0]
                elbo = elbo / num_particles
            values.append(elbo)
    values_t = torch.cat(values)
    stderr = float(values_t.std() / math.sqrt(len(values_t))) if len(values_t) > 1 else math.nan
    return LogLikelihood(
        nats=float(values_t.mean()),
        stderr=stderr,
        bound="exact" if exact else f"ELBO(particles={num_particles})",
        num_dims=math.prod(data.shape[1:]),
        num_points=len(values_t),
    )
