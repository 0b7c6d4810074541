r"""Traces of a model/guide pair, read per data point: the pieces of every estimator in
:mod:`pyro_dgm.infer.metrics` and :mod:`pyro_dgm.diagnostics`.

The model and guide take a batch as ``model(*args, **kwargs)``
(:class:`~pyro_dgm.infer.data.Batch`: ``x``, ``(x, context)`` or a dict) and put every
sample site inside a data plate over the first dimension of ``x``, their outermost plate; :math:`K` guide draws per point are vectorized in
a particle plate to the left of the model's plates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from .data import Batch, as_batch

__all__ = [
    "log_importance_weights",
    "particle_traces",
    "per_point_log_prob",
    "plate_nesting",
    "sample_sites",
    "site_draws",
]


def sample_sites(trace: poutine.Trace) -> dict[str, dict]:
    """The sample sites of a trace, without the subsample sites of its plates.

    Example:
        >>> def model():
        ...     with pyro.plate("data", 3):
        ...         pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
        >>> list(sample_sites(poutine.trace(model).get_trace()))  # without the plate's site
        ['z']
    """
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


DATA_PLATE_RULE = (
    "the per-point estimators split the data along its first dimension into batches; the "
    "model and guide must put every sample site inside a plate over that dimension, of size "
    'len(x), as their outermost plate (pyro.plate("data", len(x)))'
)


def plate_nesting(model: Callable, guide: Callable, batch: Batch | Tensor) -> int:
    """How many vectorized plates deep the pair's sample sites go, checked on ``batch``:
    every sample site must sit in a plate over the batch's points, the outermost one.

    Raises:
        ValueError: When the pair fails on the batch, or a site is not in such a plate;
            the message states the rule and names the plates found.

    Example:
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", pyro.distributions.Normal(0.0, 1.0).expand([3]).to_event(1), obs=x)
        >>> plate_nesting(model, lambda x: None, torch.zeros(4, 3))
        1
        >>> def elsewhere(x):  # the points in a plate at dim -1 of (groups, points) data
        ...     with pyro.plate("points", x.shape[1]):
        ...         pyro.sample("x", pyro.distributions.Normal(0.0, 1.0).expand([x.shape[1]]), obs=x)
        >>> plate_nesting(elsewhere, lambda x: None, torch.zeros(4, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...
    """
    batch = as_batch(batch)
    try:
        with poutine.block(), torch.no_grad():
            guide_trace = batch.call(poutine.trace(guide).get_trace)
            replayed = poutine.replay(model, trace=guide_trace)
            model_trace = batch.call(poutine.trace(replayed).get_trace)
    except Exception as error:  # raised again, with the rule that explains it
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"the pair failed on a batch of the first {len(batch)} data point(s) "
            f"({first_line}); "
            f"{DATA_PLATE_RULE}. For data whose points are not along the first dimension "
            "(e.g. groups in a plate at another position), move that dimension first."
        ) from error
    sites = [
        (name, site)
        for trace in (guide_trace, model_trace)
        for name, site in sample_sites(trace).items()
    ]
    nesting = max(
        (-f.dim for _, site in sites for f in site["cond_indep_stack"] if f.vectorized), default=0
    )
    for name, site in sites:
        plates = [f for f in site["cond_indep_stack"] if f.vectorized]
        if not any(-f.dim == nesting and f.size == len(batch) for f in plates):
            found = ", ".join(f"{f.name!r} (size {f.size}, dim {f.dim})" for f in plates)
            raise ValueError(
                f"site {name!r} is not in a data plate of size {len(batch)} at dim {-nesting} "
                f"(its plates: {found or 'none'}); {DATA_PLATE_RULE}"
            )
    return nesting


def particle_traces(
    model: Callable, guide: Callable, batch: Batch | Tensor, num_samples: int, nesting: int
) -> tuple[poutine.Trace, poutine.Trace]:
    """The traces ``(model_trace, guide_trace)`` of ``num_samples`` vectorized guide draws
    per point (a particle plate left of the model's plates) and of the model replayed on
    them, log-probabilities computed.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="particles_example")
        >>> x = torch.randn(5, 3)
        >>> model_trace, guide_trace = particle_traces(vae.model, vae.guide, x, 4, 1)
        >>> guide_trace.nodes["z"]["value"].shape  # 4 particles x 5 points x latent
        torch.Size([4, 5, 2])
    """
    batch = as_batch(batch)

    def particles(fn: Callable) -> Callable:
        def wrapped(*args: object, **kwargs: object) -> object:
            with pyro.plate("_importance_samples", num_samples, dim=-nesting - 1):
                return fn(*args, **kwargs)

        return wrapped

    guide_trace = batch.call(poutine.trace(particles(guide)).get_trace)
    replayed = poutine.replay(particles(model), trace=guide_trace)
    model_trace = batch.call(poutine.trace(replayed).get_trace)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    return model_trace, guide_trace


def per_point_log_prob(
    name: str, site: dict, batch: Batch | Tensor, num_samples: int, nesting: int
) -> Tensor:
    """A site's log-probability summed within each data point: ``(K, B)`` in float64.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="per_point_example")
        >>> x = torch.randn(5, 3)
        >>> model_trace, _ = particle_traces(vae.model, vae.guide, x, 4, 1)
        >>> lp = per_point_log_prob("x", model_trace.nodes["x"], x, 4, 1)
        >>> lp.shape, lp.dtype
        (torch.Size([4, 5]), torch.float64)
    """
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
    return per_point.expand(num_samples, -1).double()


def log_importance_weights(
    model: Callable,
    guide: Callable,
    batch: Batch | Tensor,
    num_samples: int,
    nesting: int,
    keep: Sequence[str] = (),
) -> tuple[Tensor, bool] | tuple[Tensor, bool, dict[str, Tensor]]:
    """``log p(x, z) - log q(z | x)`` of ``num_samples`` guide draws per point: ``(K, B)``;
    with ``keep``, also the guide's draws of those sites.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="weights_example")
        >>> x = torch.randn(5, 3)
        >>> log_w, has_latents = log_importance_weights(vae.model, vae.guide, x, 10,
        ...                                             plate_nesting(vae.model, vae.guide, x))
        >>> log_w.shape, has_latents  # K = 10 draws for each of 5 points
        (torch.Size([10, 5]), True)
    """
    batch = as_batch(batch)
    model_trace, guide_trace = particle_traces(model, guide, batch, num_samples, nesting)
    total = batch.x.new_zeros(num_samples, len(batch), dtype=torch.float64)
    has_latents = False
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        for name, site in sample_sites(trace).items():
            has_latents |= trace is model_trace and not site["is_observed"]
            total += sign * per_point_log_prob(name, site, batch, num_samples, nesting)
    if not keep:
        return total, has_latents
    sites = sample_sites(guide_trace)
    missing = [name for name in keep if name not in sites]
    if missing:
        raise ValueError(f"sites: the guide has no sample sites {missing}; it has {list(sites)}")
    draws = {name: site_draws(name, sites[name], num_samples, len(batch)) for name in keep}
    return total, has_latents, draws


def site_draws(name: str, site: dict, num_samples: int, num_points: int) -> Tensor:
    """A latent site's draws as ``(K, N, *event_shape)``: one event per draw and point.

    Raises:
        ValueError: When the site is not one event per draw and data point (it sits in
            inner plates, or outside the data plate).

    Example:
        >>> import pyro.distributions as dist
        >>> site = {"value": torch.zeros(10, 4, 2), "fn": dist.Normal(0.0, 1.0).expand([4, 2]).to_event(1)}
        >>> site_draws("z", site, num_samples=10, num_points=4).shape
        torch.Size([10, 4, 2])
    """
    value, event_dim = site["value"], site["fn"].event_dim
    event_shape = value.shape[value.dim() - event_dim :]
    if value.numel() != num_samples * num_points * math.prod(event_shape):
        raise ValueError(
            f"site {name!r} has value shape {tuple(value.shape)}: its draws need one event of "
            f"shape {tuple(event_shape)} per draw and data point (a site in the data plate "
            "only, not in inner plates)"
        )
    return value.reshape(num_samples, num_points, *event_shape)
