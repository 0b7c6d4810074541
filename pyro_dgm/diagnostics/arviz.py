r"""The one module of pyro_dgm that calls ArviZ: an :class:`arviz.InferenceData` of a
fitted model/guide pair, with the pointwise importance-weighted log-likelihood that
``az.loo`` and ``az.compare`` read.

ArviZ is imported when a function here is first called, never by ``import pyro_dgm``.
ArviZ 0.x (``InferenceData``, what pip installs on Python 3.11) is supported; ArviZ
1.x changed the API and is refused with an error that names the version found.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pyro import poutine
from torch import Tensor

from .._version import __version__
from ..infer.metrics import PointwiseLogLikelihood, importance_log_likelihood
from ..infer.traces import sample_sites

if TYPE_CHECKING:
    import arviz

__all__ = ["arviz_module", "pointwise_to_inference_data", "psislw", "to_inference_data"]


def arviz_module() -> Any:
    """Import ArviZ and check that its version is one pyro_dgm supports (0.x).

    Raises:
        ImportError: If ArviZ is missing, or is 1.0 or later (its API differs).

    Example:
        >>> arviz_module().__version__.startswith("0.")
        True
    """
    try:
        with warnings.catch_warnings():  # 0.2x announces its 1.0 refactor on import
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
    except ImportError as error:  # pragma: no cover - arviz is a declared dependency
        raise ImportError("pyro_dgm.diagnostics needs arviz<1: pip install 'arviz<1'") from error
    version = getattr(arviz, "__version__", "unknown")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = -1
    if major != 0 or not hasattr(arviz, "InferenceData"):
        raise ImportError(
            f"pyro_dgm.diagnostics supports ArviZ 0.x (the InferenceData API); found arviz "
            f"{version}. Install a supported one: pip install 'arviz<1'"
        )
    return arviz


def psislw(log_weights: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""ArviZ's Pareto-smoothed log weights and :math:`\hat k` of each column of
    ``log_weights`` ``(K, N)`` (draws first, as in pyro_dgm), with ``reff = 1``.

    :func:`pyro_dgm.infer.pareto_k` computes the same :math:`\hat k` without ArviZ;
    this is the reference it is tested against.

    Example:
        >>> smoothed, k = psislw(0.1 * torch.randn(1000, 3))  # 1000 draws for 3 data points
        >>> smoothed.shape, k.shape
        ((1000, 3), (3,))
    """
    az = arviz_module()
    lw = (
        log_weights.detach().cpu().double().numpy()
        if isinstance(log_weights, Tensor)
        else (np.asarray(log_weights, dtype=float))
    )
    if lw.ndim != 2:
        raise ValueError(f"log_weights must have shape (K, N), got {lw.shape}")
    smoothed, k = az.psislw(lw.T.copy(), reff=1.0)
    return np.asarray(smoothed).T, np.asarray(k)


def observed_site(model: Callable, guide: Callable, batch: Tensor) -> str:
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(batch)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
    observed = [n for n, s in sample_sites(model_trace).items() if s["is_observed"]]
    return observed[0] if len(observed) == 1 else "obs"


def to_inference_data(
    model: Callable,
    guide: Callable,
    data: Tensor,
    *,
    num_samples: int = 2000,
    num_draws: int = 200,
    site: str = "z",
    history: Any = None,
    batch_size: int = 128,
    chunk_size: int = 100,
) -> arviz.InferenceData:
    r"""An ArviZ ``InferenceData`` of a fitted model/guide pair on data points ``data``
    (held-out data, to compare generative models).

    Groups:

    - ``posterior``: the guide's :math:`K` = ``num_samples`` draws of ``site`` for every
      point, ``(chain=1, draw=K, obs=N, *latent)``.
    - ``log_likelihood``: the pointwise importance-weighted :math:`\log p(x_i)`, as
      ``num_draws`` = :math:`S` block estimates, ``(chain=1, draw=S, obs=N)``: draw
      :math:`s` is the estimate from the :math:`s`-th block of :math:`K/S` importance
      weights,

      .. math:: \ell_{s i} = \log \frac{S}{K}\sum_{k \in B_s} w_{k i}, \qquad
          w_{ki} = \frac{p(x_i, z_{ki})}{q(z_{ki} \mid x_i)},

      so that ArviZ's log pointwise predictive density, :math:`\log \frac1S \sum_s
      e^{\ell_{si}}` (``elpd_loo + p_loo`` of ``az.loo``), is the importance-weighted
      bound with all :math:`K` draws, :func:`~pyro_dgm.infer.importance_log_likelihood`.
      The model's parameters are point estimates and the data held out, so there
      is nothing to leave out: ``az.loo``'s ``p_loo`` measures only the Monte Carlo
      spread between blocks (small when the estimate is stable), its
      ``elpd_loo`` is the held-out log-likelihood less that, and ``az.compare``
      ranks models by it, with standard errors over the data points.
    - ``sample_stats``: ``log_weight`` ``(chain, draw=K, obs)``; per point
      ``pareto_k`` (the PSIS :math:`\hat k` of its weights, Yao et al. 2018) and
      ``ess`` (Kish's effective sample size); with ``history`` (``fit``'s), the
      per-epoch ``train_elbo`` and ``validation_elbo`` (nats per point) over ``epoch``.
    - ``observed_data``: ``data``.

    Cost: that of :func:`~pyro_dgm.infer.importance_log_likelihood` with :math:`K`
    draws, plus memory :math:`K N` times the latent size for the posterior group.

    References:
        | Yes, but Did It Work?: Evaluating Variational Inference (Yao et al., 2018)
        | https://arxiv.org/abs/1802.02538
        | Practical Bayesian model evaluation using leave-one-out cross-validation and
          WAIC (Vehtari et al., 2017)
        | https://arxiv.org/abs/1507.04544

    Arguments:
        model: A Pyro model ``model(x)`` with the latent ``site``.
        guide: Its guide ``guide(x)``.
        data: Data points along the first dimension (every site in a data plate over it).
        num_samples: :math:`K`, guide draws per point; a multiple of ``num_draws``.
        num_draws: :math:`S`, block estimates per point in ``log_likelihood`` (ArviZ's
            PSIS fits a tail of :math:`\min(0.2S, 3\sqrt S)` draws and, for :math:`S <
            1000`, flags :math:`\hat k > 1 - 1/\log_{10} S`: keep :math:`S \ge 200` and
            blocks of 10 or more weights; smaller blocks raise ``p_loo``).
        site: The guide's latent site.
        history: :func:`~pyro_dgm.infer.fit`'s history (or its ``to_dict()``).
        batch_size: Points per batch.
        chunk_size: Draws per vectorized pass.

    Example:
        >>> import pyro
        >>> def model(x):  # z ~ N(0, 1), x ~ N(z, 1) for each point
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", pyro.distributions.Normal(0.0, 1.0))
        ...         pyro.sample("x", pyro.distributions.Normal(z, 1.0), obs=x)
        >>> def guide(x):  # the exact posterior N(x / 2, 1/2)
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("z", pyro.distributions.Normal(x / 2, 0.5**0.5))
        >>> idata = to_inference_data(model, guide, torch.randn(6), num_samples=100,
        ...                           num_draws=4)
        >>> idata.groups()
        ['posterior', 'log_likelihood', 'sample_stats', 'observed_data']
        >>> dict(idata.log_likelihood.sizes)  # S = 4 block estimates of each point's log p(x)
        {'chain': 1, 'draw': 4, 'obs': 6}
    """
    arviz_module()
    if not isinstance(data, Tensor) or data.dim() < 1 or not len(data):
        raise ValueError("data must be a non-empty tensor of data points")
    if num_draws < 1 or num_samples < num_draws or num_samples % num_draws:
        raise ValueError(
            f"num_samples must be a positive multiple of num_draws, got num_samples="
            f"{num_samples}, num_draws={num_draws}"
        )
    with poutine.block(), torch.no_grad():
        guide_sites = sample_sites(poutine.trace(guide).get_trace(data[:1]))
    if site not in guide_sites:
        raise ValueError(
            f"site: the guide has no latent site {site!r} (it has {list(guide_sites)}); a model "
            "without latent variables has an exact log-likelihood: use "
            "pyro_dgm.infer.importance_log_likelihood"
        )
    pointwise = importance_log_likelihood(
        model,
        guide,
        data,
        num_samples=num_samples,
        batch_size=batch_size,
        chunk_size=chunk_size,
        sites=(site,),
    )
    return pointwise_to_inference_data(
        pointwise,
        data,
        site=site,
        observed_name=observed_site(model, guide, data[:1]),
        num_draws=num_draws,
        history=history,
    )


def pointwise_to_inference_data(
    pointwise: PointwiseLogLikelihood,
    data: Tensor,
    *,
    site: str = "z",
    observed_name: str = "x",
    num_draws: int = 200,
    history: Any = None,
) -> arviz.InferenceData:
    r"""The ``InferenceData`` of :func:`to_inference_data` from an
    :func:`~pyro_dgm.infer.importance_log_likelihood` result computed with
    ``sites=(site,)`` (to reuse its draws rather than draw again).

    .. math:: \ell_{s i} = \log \frac{S}{K}\sum_{k \in B_s} w_{k i}

    Example:
        >>> from pyro_dgm import infer
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="pointwise_example")
        >>> x = torch.randn(6, 3)
        >>> result = infer.importance_log_likelihood(vae.model, vae.guide, x, num_samples=100,
        ...                                          sites=("z",), pareto_k_threshold=None)
        >>> pointwise_to_inference_data(result, x, num_draws=4).posterior["z"].shape
        (1, 100, 6, 2)
    """
    az = arviz_module()
    num_samples, n = pointwise.log_weights.shape
    if site not in pointwise.samples:
        raise ValueError(
            f"pointwise holds no draws of {site!r} (it has {list(pointwise.samples)}): compute "
            f"it with importance_log_likelihood(..., sites=({site!r},))"
        )
    if len(data) != n:
        raise ValueError(f"data has {len(data)} points, pointwise has {n}")
    if num_draws < 1 or num_samples < num_draws or num_samples % num_draws:
        raise ValueError(
            f"num_samples must be a positive multiple of num_draws, got num_samples="
            f"{num_samples}, num_draws={num_draws}"
        )
    obs_name = observed_name
    per_block = num_samples // num_draws
    log_w = pointwise.log_weights  # (K, N)
    blocks = log_w.reshape(num_draws, per_block, n).logsumexp(1) - math.log(per_block)
    z = pointwise.samples[site].detach().cpu().double().numpy()
    latent_dims = [f"{site}_dim_{i}" for i in range(z.ndim - 2)]
    event_dims = [f"{obs_name}_dim_{i}" for i in range(data.dim() - 1)]
    idata = az.from_dict(
        posterior={site: z[None]},
        log_likelihood={obs_name: blocks.cpu().numpy()[None]},
        sample_stats={"log_weight": log_w.cpu().numpy()[None]},
        observed_data={obs_name: data.detach().cpu().numpy()},
        dims={
            site: ["obs", *latent_dims],
            obs_name: ["obs", *event_dims],
            "log_weight": ["obs"],
        },
        attrs={
            "bound": pointwise.bound,
            "num_samples": num_samples,
            "num_draws": num_draws,
            "log_likelihood": f"block importance-weighted estimates, {per_block} weights each",
            "pyro_dgm_version": __version__,
        },
    )
    stats = idata.sample_stats
    stats["pareto_k"] = ("obs", pointwise.pareto_k.cpu().numpy())
    stats["ess"] = ("obs", pointwise.effective_sample_size.cpu().numpy())
    if history is not None:
        h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
        stats.coords["epoch"] = np.asarray(h["epoch"], dtype=int)
        stats["train_elbo"] = ("epoch", -np.asarray(h["train_loss"], dtype=float))
        stats["validation_elbo"] = ("epoch", -np.asarray(h["validation_loss"], dtype=float))
    return idata
