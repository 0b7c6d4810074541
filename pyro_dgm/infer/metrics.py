r"""Log-likelihoods in nats and bits per dimension, with the bound they come from named."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

__all__ = [
    "LogLikelihood",
    "PointwiseLogLikelihood",
    "bits_per_dim",
    "importance_log_likelihood",
    "log_likelihood",
    "nats_to_bits_per_dim",
]


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
    nesting = _plate_nesting(model, guide, data[:1])
    with torch.no_grad(), poutine.block():
        exact = not _log_weights(model, guide, data[:1], 1, nesting)[1]
        particles = 1 if exact else num_particles  # without latents every draw is the same
        # the ELBO of each point is the mean of its log importance weights
        values = [
            _log_weights(model, guide, batch, particles, nesting)[0].mean(0)
            for batch in data.split(batch_size)
        ]
    values_t = torch.cat(values)
    stderr = float(values_t.std() / math.sqrt(len(values_t))) if len(values_t) > 1 else math.nan
    return LogLikelihood(
        nats=float(values_t.mean()),
        stderr=stderr,
        bound="exact" if exact else f"ELBO(particles={num_particles})",
        num_dims=math.prod(data.shape[1:]),
        num_points=len(values_t),
    )


@dataclass(frozen=True)
class PointwiseLogLikelihood:
    r"""Per-data-point log-likelihood estimates with their importance weights.

    Attributes:
        values: ``log p(x_i)`` estimates, shape ``(N,)`` (nats; a lower bound unless exact).
        log_weights: ``log p(x_i, z_k) - log q(z_k | x_i)``, shape ``(K, N)``.
        bound: ``"exact"`` or ``"IWAE(K=...)"``.
        num_dims: Dimensions per data point, for bits/dim.
    """

    values: Tensor
    log_weights: Tensor
    bound: str
    num_dims: int

    @property
    def effective_sample_size(self) -> Tensor:
        r"""Kish's effective sample size of each point's weights, :math:`(\sum w)^2 / \sum w^2`."""
        return torch.exp(2 * self.log_weights.logsumexp(0) - (2 * self.log_weights).logsumexp(0))

    @property
    def bits_per_dim(self) -> Tensor:
        """Each point's negative log-likelihood in bits per dimension."""
        return nats_to_bits_per_dim(-self.values, self.num_dims)

    def summary(self) -> LogLikelihood:
        """The mean over the data points, with its standard error."""
        n = len(self.values)
        stderr = float(self.values.std() / math.sqrt(n)) if n > 1 else math.nan
        return LogLikelihood(float(self.values.mean()), stderr, self.bound, self.num_dims, n)


def _sample_sites(trace: poutine.Trace) -> dict[str, dict]:
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


def _plate_nesting(model: Callable, guide: Callable, batch: Tensor) -> int:
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(batch)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
    dims = [
        -frame.dim
        for trace in (guide_trace, model_trace)
        for site in _sample_sites(trace).values()
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return max(dims, default=0)


def _log_weights(
    model: Callable, guide: Callable, batch: Tensor, num_samples: int, nesting: int
) -> tuple[Tensor, bool]:
    """``log p(x, z) - log q(z | x)`` of ``num_samples`` guide draws per point: ``(K, B)``."""

    def particles(fn: Callable) -> Callable:
        def wrapped(x: Tensor) -> object:
            with pyro.plate("_importance_samples", num_samples, dim=-nesting - 1):
                return fn(x)

        return wrapped

    guide_trace = poutine.trace(particles(guide)).get_trace(batch)
    model_trace = poutine.trace(poutine.replay(particles(model), trace=guide_trace)).get_trace(
        batch
    )
    total = batch.new_zeros(num_samples, len(batch), dtype=torch.float64)
    has_latents = False
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        trace.compute_log_prob()
        for name, site in _sample_sites(trace).items():
            has_latents |= trace is model_trace and not site["is_observed"]
            log_prob = site["log_prob"]
            while log_prob.dim() < nesting + 1:
                log_prob = log_prob.unsqueeze(0)
            if nesting == 0 or log_prob.shape[1] != len(batch):
                raise ValueError(
                    f"site {name!r} has log_prob shape {tuple(site['log_prob'].shape)}: "
                    f"per-point estimates need every sample site inside a data plate of size "
                    f"{len(batch)} as the outermost plate (dim {-nesting})"
                )
            per_point = log_prob.reshape(*log_prob.shape[:2], -1).sum(-1)
            total += sign * per_point.expand(num_samples, -1).double()
    return total, has_latents


def importance_log_likelihood(
    model: Callable,
    guide: Callable,
    data: Tensor,
    *,
    num_samples: int = 100,
    batch_size: int = 128,
    chunk_size: int = 100,
) -> PointwiseLogLikelihood:
    r"""Importance-weighted estimate of each data point's log-likelihood.

    With :math:`K` draws :math:`z_k \sim q(z \mid x_i)` of the guide,

    .. math:: \log p(x_i) \ge \log \frac{1}{K} \sum_{k=1}^K \frac{p(x_i, z_k)}{q(z_k \mid x_i)},

    the importance-weighted bound (Burda et al., 2016), which rises towards
    :math:`\log p(x_i)` as :math:`K` grows (for :math:`K = 1` it is the ELBO).
    Each point is weighted on its own, unlike Pyro's ``Importance``, which
    weights a whole batch jointly. Draws are vectorized in chunks of
    ``chunk_size`` with a particle plate left of the model's plates.

    The model and guide take a batch ``x`` and put every sample site inside
    a data plate over the first dimension of ``x``, as their outermost plate.

    References:
        | Importance Weighted Autoencoders (Burda et al., 2016)
        | https://arxiv.org/abs/1509.00519

    Arguments:
        model: A Pyro model ``model(x)``.
        guide: Its guide ``guide(x)``.
        data: Data points along the first dimension.
        num_samples: :math:`K`, guide draws per point.
        batch_size: Points per batch.
        chunk_size: Draws per vectorized pass.
    """
    if len(data) == 0:
        raise ValueError("data is empty: nothing to evaluate")
    if num_samples < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError(
            f"num_samples, batch_size and chunk_size must be >= 1, got "
            f"{num_samples}, {batch_size}, {chunk_size}"
        )
    nesting = _plate_nesting(model, guide, data[:1])
    weights, exact = [], True
    with torch.no_grad(), poutine.block():
        for batch in data.split(batch_size):
            chunks = []
            for start in range(0, num_samples, chunk_size):
                k = min(chunk_size, num_samples - start)
                log_w, has_latents = _log_weights(model, guide, batch, k, nesting)
                exact = exact and not has_latents
                chunks.append(log_w)
            weights.append(torch.cat(chunks))
    log_weights = torch.cat(weights, dim=1)
    values = log_weights.logsumexp(0) - math.log(num_samples)
    return PointwiseLogLikelihood(
        values=values,
        log_weights=log_weights,
        bound="exact" if exact else f"IWAE(K={num_samples})",
        num_dims=math.prod(data.shape[1:]),
    )
