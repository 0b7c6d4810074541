r"""ELBO surgery: the average ELBO split into reconstruction, mutual information and the
marginal KL of the aggregated posterior to the prior (Hoffman & Johnson, 2016)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine
from torch import Tensor

from ..infer.traces import (
    particle_traces,
    per_point_log_prob,
    plate_nesting,
    sample_sites,
    site_draws,
)

__all__ = ["ELBOSurgery", "SaturatedMutualInformationWarning", "elbo_surgery"]

SATURATION = 0.9  # warn when the mutual information reaches this share of its ceiling log N


class SaturatedMutualInformationWarning(UserWarning):
    r"""The mutual information estimate is close to its ceiling :math:`\log N`: the
    posteriors of the data points barely overlap, the estimate is biased down and the
    marginal KL (the average KL less it) biased up. Use more data points.

    Example:
        >>> issubclass(SaturatedMutualInformationWarning, UserWarning)
        True
    """


TERMS = ("elbo", "reconstruction", "kl", "mutual_information", "marginal_kl")


@dataclass(frozen=True)
class ELBOSurgery:
    r"""The terms of the average ELBO of a data set, in nats per data point.

    .. math:: \overline{\mathcal L} = \underbrace{\overline{\mathbb E_{q}\log p(x|z)}}_{
        \text{reconstruction}} - \underbrace{\mathbb I_q[x, z]
        + \mathrm{KL}(q_\text{agg}(z) \,\|\, p(z))}_{\text{kl}}

    Attributes:
        elbo: The average ELBO.
        reconstruction: :math:`\frac1N\sum_i \mathbb E_{q(z|x_i)} \log p(x_i \mid z)`.
        kl: The average :math:`\mathrm{KL}(q(z|x_i) \,\|\, p(z))`.
        mutual_information: :math:`\mathbb I_q[x, z]` under the data's empirical
            distribution, at most :math:`\log N`.
        marginal_kl: :math:`\mathrm{KL}(q_\text{agg}(z) \,\|\, p(z))`.
        stderr: The standard error of each term over the data points (for the mutual
            information and marginal KL only indicative: their terms share
            :math:`q_\text{agg}`).
        num_points: :math:`N`.
        num_samples: Guide draws per data point.
        site: The latent site.
        pointwise: Each term's contribution per data point, ``(N,)`` tensors.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="surgery_class_example")
        >>> s = elbo_surgery(vae.model, vae.guide, torch.randn(40, 3), num_samples=4)
        >>> abs(s.reconstruction - s.mutual_information - s.marginal_kl - s.elbo) < 1e-6  # they add up
        True
        >>> s.max_mutual_information == math.log(40)
        True
    """

    elbo: float
    reconstruction: float
    kl: float
    mutual_information: float
    marginal_kl: float
    stderr: dict[str, float]
    num_points: int
    num_samples: int
    site: str
    pointwise: dict[str, Tensor] = field(repr=False, default_factory=dict)

    @property
    def max_mutual_information(self) -> float:
        r""":math:`\log N`, the largest mutual information this estimator can report."""
        return math.log(self.num_points)

    @property
    def saturated(self) -> bool:
        r"""Whether the mutual information exceeds 90% of :math:`\log N` (then it is
        underestimated and the marginal KL overestimated: use more points)."""
        return self.mutual_information > SATURATION * self.max_mutual_information

    def to_dict(self) -> dict[str, Any]:
        """The terms, standard errors and sizes as plain numbers (for JSON)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in TERMS}
        out |= {
            "stderr": dict(self.stderr),
            "num_points": self.num_points,
            "num_samples": self.num_samples,
            "site": self.site,
            "max_mutual_information": self.max_mutual_information,
            "saturated": self.saturated,
        }
        return out

    def __str__(self) -> str:
        return (
            f"ELBO {self.elbo:.3f} = reconstruction {self.reconstruction:.3f} "
            f"- mutual information {self.mutual_information:.3f} (<= log N = "
            f"{self.max_mutual_information:.3f}) - marginal KL {self.marginal_kl:.3f} nats"
        )


def _latent_terms(
    model: Callable, guide: Callable, batch: Tensor, num_samples: int, nesting: int, site: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Draws of ``site`` ``(M, B, *event)`` with ``log q``, ``log p(z)`` and
    ``log p(x | z)`` of each ``(M, B)``."""
    model_trace, guide_trace = particle_traces(model, guide, batch, num_samples, nesting)
    guide_sites, model_sites = sample_sites(guide_trace), sample_sites(model_trace)
    if site not in guide_sites or site not in model_sites:
        raise ValueError(
            f"site: {site!r} must be a latent sample site of the model and the guide; the guide "
            f"has {list(guide_sites)}, the model {list(model_sites)}"
        )
    others = [n for n in guide_sites if n != site]
    others += [n for n, s in model_sites.items() if n != site and not s["is_observed"]]
    if others:
        raise ValueError(
            f"ELBO surgery splits a model with the single latent site {site!r}; found other "
            f"latent sites {sorted(set(others))}"
        )
    log_q = per_point_log_prob(site, guide_sites[site], batch, num_samples, nesting)
    log_prior = per_point_log_prob(site, model_sites[site], batch, num_samples, nesting)
    observed = [(n, s) for n, s in model_sites.items() if n != site]
    if not observed:
        raise ValueError("the model observes no site: there is no reconstruction term")
    log_lik = sum(per_point_log_prob(n, s, batch, num_samples, nesting) for n, s in observed)
    z = site_draws(site, guide_sites[site], num_samples, len(batch))
    return z, log_q, log_prior, log_lik


def _posterior(guide: Callable, batch: Tensor, site: str) -> tuple[Any, int]:
    """The guide's distribution of ``site`` for ``batch``, batch shape ``(B, 1, ..., 1)``."""
    # the draws scored against it are the guide's own (in the support): Pyro's argument
    # and support checks, on N^2 M values, would triple the cost for nothing
    with pyro.validation_enabled(False):
        fn = poutine.trace(guide).get_trace(batch).nodes[site]["fn"]
    shape = tuple(fn.batch_shape)
    if not shape or shape[0] != len(batch) or math.prod(shape) != len(batch):
        raise ValueError(
            f"the guide's distribution of {site!r} has batch shape {shape}: expected "
            f"({len(batch)},) (the data plate; use .to_event for the latent's own dimensions)"
        )
    return fn, len(shape)


def _log_q_agg(
    guide: Callable, data: Tensor, z: Tensor, site: str, batch_size: int, chunk_size: int
) -> Tensor:
    r""":math:`\log \frac1N \sum_j q(z \mid x_j)` at each draw ``z`` ``(S, *event)``: ``(S,)``."""
    total = torch.full((len(z),), -math.inf, dtype=torch.float64)
    for batch in data.split(batch_size):
        fn, batch_dims = _posterior(guide, batch, site)
        rows = max(1, chunk_size // len(batch))
        parts = []
        for chunk in z.split(rows):
            # every draw against every point's posterior: (C, B, 1.., *event)
            point = chunk.reshape(len(chunk), *([1] * batch_dims), *chunk.shape[1:])
            values = point.expand(len(chunk), *fn.batch_shape, *chunk.shape[1:])
            try:
                log_q = fn.log_prob(values)
            except (NotImplementedError, KeyError) as error:
                raise ValueError(
                    f"the guide's distribution of {site!r} ({type(fn).__name__}) cannot score "
                    "points it did not sample (no inverse, e.g. planar or Sylvester flows): the "
                    "aggregated posterior q_agg(z) = 1/N sum_j q(z | x_j) needs q(z | x_j) at "
                    "other points' draws"
                ) from error
            parts.append(log_q.reshape(len(chunk), -1).double().logsumexp(-1))
        total = torch.logaddexp(total, torch.cat(parts))
    return total - math.log(len(data))


def elbo_surgery(
    model: Callable,
    guide: Callable,
    data: Tensor,
    *,
    site: str = "z",
    num_samples: int = 1,
    batch_size: int = 256,
    chunk_size: int = 65536,
) -> ELBOSurgery:
    r"""Split the average ELBO of ``data`` into reconstruction, mutual information
    :math:`\mathbb I_q[x, z]` and the marginal KL of the aggregated posterior to the prior.

    .. math::
        \frac1N \sum_{i=1}^N \mathcal L_i = \frac1N\sum_i \mathbb E_{q(z|x_i)}\log p(x_i|z)
        - \mathbb I_q[x, z] - \mathrm{KL}(q_\text{agg}(z) \,\|\, p(z)), \qquad
        q_\text{agg}(z) = \frac1N \sum_{j=1}^N q(z \mid x_j)

    *Estimator.* For each point :math:`M` = ``num_samples`` draws
    :math:`z_{im} \sim q(z \mid x_i)`; :math:`\log q_\text{agg}(z_{im})` is the
    log-mean-exp of :math:`\log q(z_{im} \mid x_j)` over **all** :math:`N` points of
    ``data`` (their own included), exact for the data's empirical distribution.
    Then :math:`\mathbb I_q \approx \frac1{NM}\sum_{i,m} [\log q(z_{im}|x_i) - \log
    q_\text{agg}(z_{im})]` and :math:`\mathrm{KL}(q_\text{agg} \| p) \approx
    \frac1{NM}\sum_{i,m}[\log q_\text{agg}(z_{im}) - \log p(z_{im})]`; the three
    terms add up to the Monte Carlo ELBO exactly. As estimates of the population
    quantities (data drawn from a distribution, not fixed) they are biased: the
    mutual information cannot exceed :math:`\log N`, and the bias shrinks as
    :math:`N` grows (Hoffman & Johnson use the whole training set). When the
    estimate exceeds 90% of :math:`\log N` a :class:`SaturatedMutualInformationWarning`
    says so: the posteriors barely overlap and both split terms are off.

    Cost: :math:`NM` guide and model draws, and :math:`N^2 M` evaluations of
    :math:`q(z \mid x_j)` (a flow posterior inverts its transforms: IAF steps are
    sequential in the latent dimension). Guides whose flows have no inverse
    (planar, Sylvester) cannot score other points' draws and are refused.

    The model and guide take a batch ``x`` and put every site in a data plate over
    its first dimension, as their outermost plate (as the VAEs of
    :mod:`pyro_dgm.models` do); ``site`` is the only latent site; every other
    model site is observed.

    References:
        | ELBO surgery: yet another way to carve up the variational evidence lower
          bound (Hoffman & Johnson, 2016)
        | https://approximateinference.org/2016/accepted/HoffmanJohnson2016.pdf

    Arguments:
        model: A Pyro model ``model(x)``.
        guide: Its guide ``guide(x)``.
        data: The data points (e.g. the training set), along the first dimension.
        site: The latent site.
        num_samples: :math:`M`, guide draws per point.
        batch_size: Points per guide/model pass.
        chunk_size: Log-density evaluations per vectorized pass for :math:`q_\text{agg}`.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="surgery_example")
        >>> s = elbo_surgery(vae.model, vae.guide, torch.randn(40, 3))
        >>> sorted(s.to_dict())[:5]
        ['elbo', 'kl', 'marginal_kl', 'max_mutual_information', 'mutual_information']
    """
    if not isinstance(data, Tensor) or data.dim() < 1 or len(data) < 2:
        raise ValueError(
            f"data must be a tensor of at least 2 points, got "
            f"{tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__}"
        )
    if num_samples < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError(
            f"num_samples, batch_size and chunk_size must be >= 1, got {num_samples}, "
            f"{batch_size}, {chunk_size}"
        )
    nesting = plate_nesting(model, guide, data[:1])
    draws, log_q, log_prior, log_lik = [], [], [], []
    with torch.no_grad(), poutine.block():
        for batch in data.split(batch_size):
            z, lq, lp, ll = _latent_terms(model, guide, batch, num_samples, nesting, site)
            draws.append(z)
            log_q.append(lq)
            log_prior.append(lp)
            log_lik.append(ll)
        z = torch.cat(draws, dim=1)  # (M, N, *event)
        flat = z.reshape(-1, *z.shape[2:])
        log_agg = _log_q_agg(guide, data, flat, site, batch_size, chunk_size)
    log_agg = log_agg.reshape(num_samples, len(data))
    log_q_t, log_prior_t = torch.cat(log_q, dim=1), torch.cat(log_prior, dim=1)
    reconstruction = torch.cat(log_lik, dim=1).mean(0)
    pointwise = {
        "reconstruction": reconstruction,
        "kl": (log_q_t - log_prior_t).mean(0),
        "mutual_information": (log_q_t - log_agg).mean(0),
        "marginal_kl": (log_agg - log_prior_t).mean(0),
    }
    pointwise["elbo"] = reconstruction - pointwise["kl"]
    n = len(data)
    mutual_information = float(pointwise["mutual_information"].mean())
    if mutual_information > SATURATION * math.log(n):  # as ELBOSurgery.saturated
        warnings.warn(
            f"the mutual information estimate {mutual_information:.3f} is "
            f"{100 * mutual_information / math.log(n):.0f}% of its ceiling log N = "
            f"{math.log(n):.3f} (N = {n}): the posteriors barely overlap, so I_q is "
            "underestimated and the marginal KL overestimated; use more data points",
            SaturatedMutualInformationWarning,
            stacklevel=2,
        )
    return ELBOSurgery(
        **{name: float(pointwise[name].mean()) for name in TERMS},
        stderr={name: float(pointwise[name].std() / math.sqrt(n)) for name in TERMS},
        num_points=n,
        num_samples=num_samples,
        site=site,
        pointwise=pointwise,
    )
