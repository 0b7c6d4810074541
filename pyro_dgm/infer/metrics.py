r"""Log-likelihoods in nats and bits per dimension, with the bound they come from named."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from pyro import poutine
from pyro.ops.stats import fit_generalized_pareto
from torch import Tensor

from ..utils.checks import check_int
from ..utils.registration import answered_by_param_store
from .chunking import (
    channels_last_convolutions,
    choose_chunks,
    default_memory_budget,
    draw_chunks,
    has_latent_sites,
)
from .data import as_data
from .traces import log_importance_weights, plate_nesting

__all__ = [
    "HeavyTailWarning",
    "LogLikelihood",
    "PointwiseLogLikelihood",
    "TailCheckSkippedWarning",
    "bits_per_dim",
    "importance_log_likelihood",
    "likelihood_bounds",
    "log_likelihood",
    "nats_to_bits_per_dim",
    "pareto_k",
]

PARETO_K_MIN_SAMPLES = 50  # fewer draws leave fewer than 10 points in the PSIS tail
# the largest weights within this (log) of each other are equal but for rounding (an exact
# guide): a Pareto fit to rounding noise would report nonsense, so they count as bounded
_FLAT_TAIL = 1e-6


class HeavyTailWarning(UserWarning):
    """Some data points' importance weights are heavy-tailed (PSIS k-hat above the threshold):
    their log-likelihood estimates, and the guide there, are not to be trusted.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", HeavyTailWarning)  # a heavy tail now stops a script
        ...     issubclass(HeavyTailWarning, UserWarning)
        True
    """


class TailCheckSkippedWarning(UserWarning):
    """Too few importance samples for PSIS k-hat (fewer than 50): the tail of the weights
    was not checked, and ``pareto_k`` is NaN.

    Example:
        >>> import pyro
        >>> import warnings
        >>> def model(x):  # a Gaussian latent per point, observed with noise
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
        ...         pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x)
        >>> def guide(x):
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", pyro.distributions.Normal(x / 2, 0.7))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     result = importance_log_likelihood(model, guide, torch.zeros(3), num_samples=10)
        >>> [w.category.__name__ for w in caught], bool(result.pareto_k.isnan().all())
        (['TailCheckSkippedWarning'], True)
    """


def nats_to_bits_per_dim(nats: float | Tensor, num_dims: int) -> float | Tensor:
    r"""Convert a negative log-likelihood per data point (nats) to bits per dimension.

    .. math:: \mathrm{bpd} = \frac{-\log P(y)}{D \log 2}

    Example:
        >>> round(nats_to_bits_per_dim(64 * math.log(17), 64), 3)  # uniform coding of 17 levels
        4.087
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

    Example:
        >>> print(LogLikelihood(-110.0, 0.5, "IWAE(K=1000)", 64, 360))
        log p = -110.0000 ± 0.5000 nats (IWAE(K=1000)), 2.4796 bits/dim over 360 points
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
    data: Any,
    *,
    num_particles: int = 1,
    batch_size: int = 256,
) -> LogLikelihood:
    r"""The log-likelihood per data point: exact for a model without latent
    variables (a flow trained by maximum likelihood), else its ELBO bound
    averaged over ``num_particles`` guide samples.

    .. math:: \log p(x) \ge \mathbb{E}_{q(z|x)}[\log p(x, z) - \log q(z|x)]

    The model and guide must put every sample site inside a data plate over
    the first dimension of the data (no subsampling), so that each point's
    ELBO is its own. ``data`` is a tensor, a tuple ``(x, context, ...)`` or dict of
    tensors, or a DataLoader (:mod:`pyro_dgm.infer.data`).

    Example:
        >>> from pyro_dgm.flows import MAF
        >>> from pyro_dgm.models import FlowModel
        >>> pair = FlowModel(MAF(2, num_layers=1), name="log_likelihood_example")
        >>> result = log_likelihood(pair.model, pair.guide, torch.randn(50, 2))
        >>> result.bound, result.num_points  # a flow: no latent, so exact
        ('exact', 50)
    """
    data = as_data(data, "data")
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    first = data.head(2)  # two points: a data plate is told apart from a plate of size 1
    nesting = plate_nesting(model, guide, first)
    with torch.no_grad(), poutine.block():
        exact = not log_importance_weights(model, guide, first, 1, nesting)[1]
        particles = 1 if exact else num_particles  # without latents every draw is the same
        # the ELBO of each point is the mean of its log importance weights
        values = [
            log_importance_weights(model, guide, batch, particles, nesting)[0].mean(0)
            for batch in data.batches(batch_size)
        ]
    values_t = torch.cat(values)
    stderr = float(values_t.std() / math.sqrt(len(values_t))) if len(values_t) > 1 else math.nan
    return LogLikelihood(
        nats=float(values_t.mean()),
        stderr=stderr,
        bound="exact" if exact else f"ELBO(particles={num_particles})",
        num_dims=math.prod(first.x.shape[1:]),
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
        samples: The guide's draws of the latent sites asked for (``sites=`` of
            :func:`importance_log_likelihood`), each ``(K, N, ...)``, draw ``k`` of
            point ``i`` being the one that ``log_weights[k, i]`` weighs.

    Example:
        >>> import pyro
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
        ...         pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior N(x / 2, 1/2): every weight is p(x)
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", pyro.distributions.Normal(x / 2, 0.5**0.5))
        >>> x = torch.tensor([0.0, 1.0, 2.0])
        >>> result = importance_log_likelihood(model, guide, x, num_samples=100)
        >>> result.log_weights.shape, result.values.shape
        (torch.Size([100, 3]), torch.Size([3]))
        >>> exact = pyro.distributions.Normal(0.0, 2.0**0.5).log_prob(x)  # p(x) = N(0, 2)
        >>> bool(torch.allclose(result.values.float(), exact, atol=1e-5))
        True
    """

    values: Tensor
    log_weights: Tensor
    bound: str
    num_dims: int
    samples: dict[str, Tensor] = field(default_factory=dict)

    @cached_property
    def pareto_k(self) -> Tensor:
        r"""The PSIS Pareto :math:`\hat k` of each point's importance weights, ``(N,)``
        (see :func:`pareto_k`): below 0.5 good, 0.5 to 0.7 usable, above 0.7 the
        estimate of :math:`\log p(x_i)` and the guide at :math:`x_i` are not to be trusted."""
        return pareto_k(self.log_weights)

    def heavy_tailed(self, threshold: float = 0.7) -> Tensor:
        r"""Indices of the points whose :math:`\hat k` exceeds ``threshold``."""
        return torch.nonzero(self.pareto_k > threshold).flatten()

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
        return self._mean(self.values, self.bound)

    def _mean(self, values: Tensor, bound: str) -> LogLikelihood:
        n = len(values)
        stderr = float(values.std() / math.sqrt(n)) if n > 1 else math.nan
        return LogLikelihood(float(values.mean()), stderr, bound, self.num_dims, n)

    def elbo(self) -> LogLikelihood:
        r"""The ELBO from the same draws: each point's mean log weight,
        :math:`\frac{1}{K} \sum_k \log w_{ik}`, averaged over the points (an estimate with
        :math:`K` particles, at no extra cost; the bound is ``"exact"`` without latents).

        Example:
            >>> log_weights = torch.tensor([[0.0, 1.0], [-2.0, 3.0]])  # K = 2 draws, N = 2
            >>> result = PointwiseLogLikelihood(torch.zeros(2), log_weights, "IWAE(K=2)", 1)
            >>> print(result.elbo())  # the points' ELBOs are -1 and 2
            log p = 0.5000 ± 1.5000 nats (ELBO(particles=2)), -0.7213 bits/dim over 2 points
        """
        bound = "exact" if self.bound == "exact" else f"ELBO(particles={len(self.log_weights)})"
        return self._mean(self.log_weights.mean(0), bound)

    def convergence(self, threshold: float = 0.7) -> dict[str, float | int | bool]:
        r"""How far to trust the bound, in numbers.

        With :math:`K` draws, the bound of their first :math:`K/10` is computed too: the
        IWAE bound's gap to :math:`\log p(x)` falls about as :math:`1/K` (Burda et al.,
        2016), so if it moved by :math:`\Delta` from :math:`K/10` to :math:`K`, about
        :math:`\Delta / 9` remain. ``converged`` is whether that remainder is below the
        standard error of the mean estimate (more draws would not change it measurably)
        and most points' weights have light tails (median :math:`\hat k` at most
        ``threshold``): with heavier tails the :math:`1/K` rule does not hold and the
        bound is not to be trusted at this :math:`K`.

        Returns:
            ``num_samples`` :math:`K`, ``share_heavy_tailed`` (points with
            :math:`\hat k >` ``threshold``), ``median_pareto_k``, ``moved_nats`` (mean bound at
            :math:`K` minus at :math:`K/10`), ``remaining_nats`` (:math:`\Delta / 9`),
            ``stderr_nats`` and ``converged``.
        """
        k_draws = self.log_weights.shape[0]
        tenth = max(1, k_draws // 10)
        head = self.log_weights[:tenth]
        at_tenth = head.logsumexp(0) - math.log(tenth)
        moved = float((self.values - at_tenth).mean()) if k_draws > 1 else 0.0
        stderr = self.summary().stderr
        k_hat = self.pareto_k
        defined = k_hat[~torch.isnan(k_hat)]
        remaining = moved / 9 if k_draws > 1 else math.nan
        median_k = float(defined.median()) if len(defined) else math.nan
        light_tails = not median_k > threshold  # else the 1/K rule does not hold
        return {
            "num_samples": k_draws,
            "share_heavy_tailed": float((k_hat > threshold).double().mean()),
            "median_pareto_k": median_k,
            "moved_nats": moved,
            "remaining_nats": remaining,
            "stderr_nats": stderr,
            "converged": bool(self.bound == "exact" or (light_tails and remaining <= stderr)),
        }

    def report(self, threshold: float = 0.7) -> str:
        """One line on the estimate: the bound, the tail check and convergence in :math:`K`."""
        summary = self.summary()
        if self.bound == "exact":
            return f"{summary} (exact: no importance sampling)"
        c = self.convergence(threshold)
        verdict = (
            "converged in K"
            if c["converged"]
            else f"not converged: about {c['remaining_nats']:.3f} nats per point remain at "
            f"K={c['num_samples']}, above the standard error; use more samples"
        )
        return (
            f"{summary}; k-hat > {threshold} at {100 * c['share_heavy_tailed']:.0f}% of the "
            f"points (median {c['median_pareto_k']:.2f}); the bound moved "
            f"{c['moved_nats']:+.3f} nats from K={max(1, c['num_samples'] // 10)} to "
            f"K={c['num_samples']}: {verdict}"
        )


def pareto_k(log_weights: Tensor) -> Tensor:
    r"""The Pareto-smoothed importance sampling (PSIS) shape estimate :math:`\hat k` of
    each column of ``log_weights`` ``(K, N)``: one per data point.

    The largest :math:`M = \lceil\min(0.2 K, 3\sqrt K)\rceil` weights of a column are
    fitted by a generalized Pareto distribution (Zhang & Stephens' estimator with the
    weak prior of Vehtari et al.), exactly as Pyro's joint
    ``pyro.infer.importance.psis_diagnostic`` does for a whole batch (whose tail
    rule this repeats, calling the same ``pyro.ops.stats.fit_generalized_pareto``)
    and as ArviZ's ``psislw`` does with ``reff=1``: the result matches both.
    :math:`\hat k < 0.5`: the weights have a finite variance; :math:`0.5 \le \hat k
    \le 0.7`: usable; :math:`\hat k > 0.7`: the estimate is unreliable. For a target
    :math:`\mathcal N(0, I)` and proposal :math:`\mathcal N(0, s^2 I)`, :math:`s < 1`,
    the true :math:`k` is :math:`1 - s^2`.

    .. math:: P(w > t) \propto t^{-1/k} \text{ for large } t

    Special values: ``nan`` with fewer than 50 draws (a tail of fewer than 10 points
    cannot be fitted); ``-inf`` when the largest :math:`M + 1` weights agree to a
    relative :math:`10^{-6}` (bounded: the weights of an exact guide are constant
    but for rounding); ``inf`` when fewer than 10 weights are
    within a factor :math:`10^{15}` of the largest (as Pyro reports). Cost:
    :math:`O(N K \log K)`.

    References:
        | Yes, but Did It Work?: Evaluating Variational Inference (Yao et al., 2018)
        | https://arxiv.org/abs/1802.02538
        | Pareto Smoothed Importance Sampling (Vehtari et al., 2015)
        | https://arxiv.org/abs/1507.02646

    Arguments:
        log_weights: Log importance weights, draws along dimension 0, ``(K,)`` or ``(K, N)``.

    Returns:
        :math:`\hat k`, shape ``(N,)`` (or ``()`` for a vector).

    Example:
        >>> import pyro
        >>> g = torch.Generator().manual_seed(1)
        >>> z = 0.7 * torch.randn(10000, 1, generator=g)  # proposal N(0, 0.7^2), target N(0, 1)
        >>> normal = pyro.distributions.Normal
        >>> log_w = normal(0.0, 1.0).log_prob(z) - normal(0.0, 0.7).log_prob(z)
        >>> k = pareto_k(log_w)  # the true k is 1 - 0.7^2 = 0.51
        >>> k.shape, round(k.item(), 2)
        (torch.Size([1]), 0.53)
    """
    if not isinstance(log_weights, Tensor) or log_weights.dim() not in (1, 2):
        raise ValueError(
            f"log_weights must be a tensor of shape (K,) or (K, N), got "
            f"{getattr(log_weights, 'shape', type(log_weights).__name__)}"
        )
    if torch.isnan(log_weights).any():
        raise ValueError("log_weights contains NaN")
    columns = log_weights.detach().double().reshape(len(log_weights), -1)
    num = len(columns)
    tail_size = math.ceil(min(0.2 * num, 3.0 * math.sqrt(num)))
    out = torch.full((columns.shape[1],), math.nan, dtype=torch.float64)
    if num < PARETO_K_MIN_SAMPLES:
        return out.reshape(log_weights.shape[1:])
    # Pyro's psis_diagnostic applied column by column (it only handles one joint vector)
    ordered = (columns - columns.max(0).values).sort(0).values.cpu()
    for i in range(columns.shape[1]):
        lw = ordered[:, i]
        if lw[-tail_size - 1] > -_FLAT_TAIL:  # the largest weights tie: bounded weights
            out[i] = -math.inf
            continue
        cutoff = max(math.log(1e-15), float(lw[-tail_size - 1]))
        tail = lw[lw > cutoff]
        if len(tail) < 10:
            out[i] = math.inf
            continue
        out[i] = fit_generalized_pareto(tail.exp() - math.exp(cutoff))[0]
    return out.reshape(log_weights.shape[1:])


def importance_log_likelihood(
    model: Callable,
    guide: Callable,
    data: Any,
    *,
    num_samples: int = 100,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    channels_last: bool | None = None,
    sites: Sequence[str] = (),
    pareto_k_threshold: float | None = 0.7,
) -> PointwiseLogLikelihood:
    r"""Importance-weighted estimate of each data point's log-likelihood.

    With :math:`K` draws :math:`z_k \sim q(z \mid x_i)` of the guide,

    .. math:: \log p(x_i) \ge \log \frac{1}{K} \sum_{k=1}^K \frac{p(x_i, z_k)}{q(z_k \mid x_i)},

    the importance-weighted bound (Burda et al., 2016), which rises towards
    :math:`\log p(x_i)` as :math:`K` grows (for :math:`K = 1` it is the ELBO).
    Each point is weighted on its own, unlike Pyro's ``Importance``, which
    weights a whole batch jointly. Both axes are vectorized: one pass scores
    ``batch_size`` points with ``chunk_size`` draws each, in a particle plate left of the
    model's plates; by default both come from ``memory_budget``
    (:func:`~pyro_dgm.infer.chunking.choose_chunks`: all :math:`K` draws of a point in one
    pass where they fit). The chunking changes which random numbers each draw gets, not
    the estimator: for a fixed seed the same ``batch_size`` and ``chunk_size`` give the
    same numbers.

    The model and guide take a batch ``x`` and put every sample site inside
    a data plate over the first dimension of ``x``, as their outermost plate.

    The result also holds each point's effective sample size and PSIS
    :math:`\hat k` (:func:`pareto_k`, Yao et al., 2018); a :class:`HeavyTailWarning`
    names the points whose :math:`\hat k` exceeds ``pareto_k_threshold`` (checked
    for :math:`K \ge 50` and a model with latent variables; with fewer draws a
    :class:`TailCheckSkippedWarning` says the check was skipped).

    References:
        | Importance Weighted Autoencoders (Burda et al., 2016)
        | https://arxiv.org/abs/1509.00519

    Arguments:
        model: A Pyro model ``model(x)``.
        guide: Its guide ``guide(x)``.
        data: Data points along the first dimension.
        num_samples: :math:`K`, guide draws per point.
        batch_size: Points per pass (``None``: from ``memory_budget``).
        chunk_size: Draws per pass (``None``: from ``memory_budget``).
        memory_budget: Bytes of tensors alive at once in a pass, measured on a probe
            pass; ``None``: 32 MiB on a CPU (cache-sized: the fastest there), 1 GiB on
            an accelerator.
        channels_last: Lay out the ``Conv2d`` weights of the pair's modules (``model``
            and ``guide`` bound methods of an ``nn.Module``) channels-last on a CPU while
            scoring (:func:`~pyro_dgm.infer.chunking.channels_last_convolutions`), which
            ran the digits image flows' scoring 1.1x (a whole pass) to 1.5x (the convolutions
            alone) faster, with the same values up to float rounding; ``None``: on,
            ``False``: off.
        sites: Latent sites of the guide whose draws to keep in ``.samples``
            (memory :math:`K N` times the site's size).
        pareto_k_threshold: Warn about points whose :math:`\hat k` is above this
            (``None``: no check, and no cost).

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="iwae_example")
        >>> result = importance_log_likelihood(vae.model, vae.guide, torch.randn(20, 3),
        ...                                    num_samples=100, pareto_k_threshold=None)
        >>> result.bound, result.summary().num_points
        ('IWAE(K=100)', 20)
    """
    data = as_data(data, "data")
    check_int(num_samples, "num_samples", 1)
    for name, value in (
        ("batch_size", batch_size),
        ("chunk_size", chunk_size),
        ("memory_budget", memory_budget),
    ):
        if value is not None:
            check_int(value, name, 1)
    if channels_last not in (None, True, False):
        raise ValueError(f"channels_last must be None, True or False, got {channels_last!r}")
    if isinstance(sites, str):
        sites = (sites,)
    layout = channels_last_convolutions(model, guide, enabled=channels_last is not False)
    # only sample sites are read: the store's tensors answer the params, untraced
    model, guide = answered_by_param_store(model), answered_by_param_store(guide)
    first = data.head(2)  # two points: a data plate is told apart from a plate of size 1
    nesting = plate_nesting(model, guide, first)
    weights, exact = [], True
    draws: dict[str, list[Tensor]] = {name: [] for name in sites}
    with torch.no_grad(), poutine.block(), layout:
        budget = memory_budget if memory_budget is not None else default_memory_budget(first)
        latent = has_latent_sites(model, guide, first)
        # without latent variables every draw is the same: score one, repeat it
        drawn = num_samples if latent else 1
        points, per_pass = choose_chunks(
            model, guide, first, drawn, nesting, budget, batch_size, chunk_size
        )
        for loaded in data.batches(points):
            for start in range(0, len(loaded), points):  # a loader's batch may be larger
                batch = loaded if len(loaded) <= points else _rows(loaded, start, points)
                chunks = []
                batch_draws: dict[str, list[Tensor]] = {name: [] for name in sites}
                for k in draw_chunks(drawn, per_pass):
                    log_w, has_latents, *kept = log_importance_weights(
                        model, guide, batch, k, nesting, sites
                    )
                    exact = exact and not has_latents
                    chunks.append(log_w if latent else log_w.expand(num_samples, -1))
                    for name, value in (kept[0] if kept else {}).items():
                        batch_draws[name].append(value)
                weights.append(torch.cat(chunks))
                for name in sites:
                    draws[name].append(torch.cat(batch_draws[name]))
    log_weights = torch.cat(weights, dim=1)
    values = log_weights.logsumexp(0) - math.log(num_samples)
    result = PointwiseLogLikelihood(
        values=values,
        log_weights=log_weights,
        bound="exact" if exact else f"IWAE(K={num_samples})",
        num_dims=math.prod(first.x.shape[1:]),
        samples={name: torch.cat(parts, dim=1) for name, parts in draws.items()},
    )
    if pareto_k_threshold is not None and not exact:
        if num_samples >= PARETO_K_MIN_SAMPLES:
            _warn_heavy_tails(result, pareto_k_threshold)
        else:
            warnings.warn(
                f"num_samples={num_samples} is below {PARETO_K_MIN_SAMPLES}: the PSIS k-hat "
                "tail check of the importance weights was skipped (pareto_k is NaN), so a "
                "heavy-tailed guide would go unnoticed; use num_samples >= "
                f"{PARETO_K_MIN_SAMPLES}, or pareto_k_threshold=None to skip it knowingly",
                TailCheckSkippedWarning,
                stacklevel=2,
            )
    return result


def likelihood_bounds(
    model: Callable,
    guide: Callable,
    data: Any,
    *,
    num_samples: Sequence[int] = (1000,),
    num_particles: int = 1,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> list[LogLikelihood]:
    r"""The ELBO and the importance-weighted bound for each :math:`K` in ``num_samples``,
    one :class:`LogLikelihood` each, whose ``bound`` names it.

    .. math:: \mathrm{ELBO} \le \mathcal{L}_{K_1} \le \mathcal{L}_{K_2} \le \log p(x)
        \quad (K_1 \le K_2)

    For a dequantized model of integers the ``bits_per_dim`` of each is an upper bound
    of :math:`-\log_2 P(y) / D`. Without latent variables every bound is exact.

    Example:
        >>> import pyro
        >>> import pyro.distributions as dist
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> def guide(x):
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", dist.Normal(x / 2, 0.8))
        >>> [b.bound for b in likelihood_bounds(model, guide, torch.randn(8), num_samples=(50,))]
        ['ELBO(particles=1)', 'IWAE(K=50)']
    """
    elbo_batch = 64 if batch_size is None else batch_size
    out = [log_likelihood(model, guide, data, num_particles=num_particles, batch_size=elbo_batch)]
    for k in num_samples:
        pointwise = importance_log_likelihood(
            model,
            guide,
            data,
            num_samples=k,
            batch_size=batch_size,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        )
        out.append(pointwise.summary())
    return out


def _rows(batch: Any, start: int, size: int) -> Any:
    """Points ``start`` to ``start + size`` of a batch (every tensor along its first dim)."""
    return batch.map(lambda t: t[start : start + size])


def _warn_heavy_tails(result: PointwiseLogLikelihood, threshold: float) -> None:
    heavy = result.heavy_tailed(threshold).tolist()
    if heavy:
        shown = ", ".join(map(str, heavy[:20])) + (", ..." if len(heavy) > 20 else "")
        k = result.pareto_k[heavy]
        c = result.convergence(threshold)
        state = "has converged in K" if c["converged"] else "has NOT converged in K"
        warnings.warn(
            f"{len(heavy)} of {len(result.values)} data points have heavy-tailed importance "
            f"weights (PSIS k-hat > {threshold}, up to {float(k.max()):.2f}; median k-hat "
            f"{c['median_pareto_k']:.2f}): points [{shown}]. Their log p(x) estimates are "
            f"unreliable and the guide fits their posteriors poorly. The bound moved "
            f"{c['moved_nats']:+.3f} nats per point from K={max(1, c['num_samples'] // 10)} "
            f"to K={c['num_samples']} and {state} (PointwiseLogLikelihood.report()).",
            HeavyTailWarning,
            stacklevel=3,
        )
