r"""Active latent units of a VAE (Burda et al., 2016) and the warning that posterior
collapse is never silent."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..utils.checks import check_int, check_number

__all__ = [
    "ACTIVITY_THRESHOLD",
    "KL_NEAR_ZERO",
    "ActiveUnits",
    "PosteriorCollapseWarning",
    "active_units",
    "collapse_report",
]

#: Burda et al.'s threshold on :math:`\mathrm{Cov}_x(\mathbb E_{q(z|x)}[z_u])`.
ACTIVITY_THRESHOLD = 0.01
#: Below this average KL (nats per point) the latent carries almost nothing about
#: ``x``: the mutual information :math:`\mathbb I_q[x, z]` is at most the average KL.
KL_NEAR_ZERO = 0.1


class PosteriorCollapseWarning(UserWarning):
    r"""The VAE's latent carries (almost) nothing about the data: no active unit, or an
    average :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))` near zero. The decoder models
    the data without :math:`z`, and the importance-weighted bound equals the ELBO.

    Example:
        >>> issubclass(PosteriorCollapseWarning, UserWarning)
        True
    """


@dataclass(frozen=True)
class ActiveUnits:
    r"""The activity of each latent unit over a data set.

    Attributes:
        count: Units with activity above ``threshold``.
        variances: :math:`A_u = \mathrm{Var}_x(\mathbb E_{q(z|x)}[z_u])`, ``(latent_dim,)``.
        threshold: The activity threshold (Burda et al.: 0.01).
        kl: The average :math:`\mathrm{KL}(q(z|x) \,\|\, p(z))` in nats per point (a
            Monte Carlo estimate), or ``None`` for a pair without a prior to score.
        num_points: The data points.
        num_samples: Guide draws per point for the KL and, when the posterior has no
            closed-form mean (a flow posterior), for :math:`\mathbb E_q[z]`.
        exact_mean: Whether :math:`\mathbb E_q[z]` is the posterior's own mean.

    Example:
        >>> r = ActiveUnits(1, torch.tensor([0.5, 0.001]), 0.01, 3.2, 100, 16, True)
        >>> r.latent_dim, r.active.tolist(), r.collapsed
        (2, [True, False], False)
    """

    count: int
    variances: Tensor = field(repr=False)
    threshold: float
    kl: float | None
    num_points: int
    num_samples: int
    exact_mean: bool

    @property
    def latent_dim(self) -> int:
        """The number of latent units."""
        return len(self.variances)

    @property
    def active(self) -> Tensor:
        """Which units are active, ``(latent_dim,)`` booleans."""
        return self.variances > self.threshold

    @property
    def collapsed(self) -> bool:
        """Whether no unit is active or the average KL is near zero."""
        return self.count == 0 or (self.kl is not None and self.kl < KL_NEAR_ZERO)

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain values (for JSON)."""
        return {
            "count": self.count,
            "latent_dim": self.latent_dim,
            "threshold": self.threshold,
            "variances": [float(v) for v in self.variances],
            "kl": self.kl,
            "num_points": self.num_points,
            "num_samples": self.num_samples,
            "exact_mean": self.exact_mean,
            "collapsed": self.collapsed,
        }

    def __str__(self) -> str:
        kl = "" if self.kl is None else f", average KL {self.kl:.3f} nats"
        return f"active units {self.count} of {self.latent_dim}{kl}"


def _posterior_mean(q: Any, num_samples: int) -> tuple[Tensor, bool]:
    try:
        mean = q.mean
        if torch.isfinite(mean).all():
            return mean, True
    except NotImplementedError:
        pass
    return q.sample((num_samples,)).mean(0), False


def active_units(
    vae: Any,
    x: Tensor,
    context: Tensor | None = None,
    *,
    threshold: float = ACTIVITY_THRESHOLD,
    num_samples: int = 16,
    batch_size: int = 256,
    warn: bool = True,
) -> ActiveUnits:
    r"""Count the active latent units of a VAE on data ``x`` and warn of posterior collapse.

    .. math:: A_u = \mathrm{Cov}_x\big(\mathbb E_{q(z|x)}[z_u]\big), \qquad
        \text{unit } u \text{ is active} \iff A_u > 0.01

    A unit whose posterior mean does not move with :math:`x` carries no information
    (Burda et al., 2016). The mean is the posterior's own (a Gaussian posterior) or a
    Monte Carlo average of ``num_samples`` draws (a flow posterior); the variance is
    over the points of ``x``. The average KL is estimated with the same draws. A
    :class:`PosteriorCollapseWarning` is raised when no unit is active or the average
    KL is below :data:`KL_NEAR_ZERO` nats (the mutual information of :math:`x` and
    :math:`z` is at most the average KL).

    References:
        | Importance Weighted Autoencoders (Burda et al., 2016)
        | https://arxiv.org/abs/1509.00519

    Arguments:
        vae: A :class:`~pyro_dgm.models.VAE` (anything with ``posterior(x, context)``;
            with ``prior()`` the KL is reported too).
        x: Data points ``(N, *event_shape)``, ``N >= 2``.
        context: The context ``(N, condition_dim)`` of a conditional VAE.
        threshold: The activity threshold.
        num_samples: Guide draws per point.
        batch_size: Points per encoder pass.
        warn: Raise :class:`PosteriorCollapseWarning` on collapse.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,), name="active_units_example")
        >>> r = active_units(vae, torch.randn(50, 3), warn=False)
        >>> r.latent_dim, r.num_points
        (2, 50)
    """
    if not callable(getattr(vae, "posterior", None)):
        raise ValueError(
            f"vae: expected a VAE with a posterior(x) method, got {type(vae).__name__}"
        )
    if not isinstance(x, Tensor) or x.dim() < 1 or len(x) < 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x: expected a tensor of at least 2 points (N, ...), got {got}")
    threshold = check_number(threshold, "threshold", positive=True)
    num_samples = check_int(num_samples, "num_samples", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    prior_fn = getattr(vae, "prior", None)
    means, kls, exact = [], [], True
    with torch.no_grad():
        prior = prior_fn() if callable(prior_fn) else None
        for i in range(0, len(x), batch_size):
            batch = x[i : i + batch_size]
            extra = () if context is None else (context[i : i + batch_size],)
            q = vae.posterior(batch, *extra)
            mean, own = _posterior_mean(q, num_samples)
            exact = exact and own
            means.append(mean.double().reshape(len(batch), -1))
            if prior is not None:
                z = q.sample((num_samples,))
                kls.append((q.log_prob(z) - prior.log_prob(z)).double().mean(0))
    mean = torch.cat(means)
    variances = mean.var(0)
    kl = float(torch.cat(kls).mean()) if kls else None
    result = ActiveUnits(
        count=int((variances > threshold).sum()),
        variances=variances,
        threshold=threshold,
        kl=kl,
        num_points=len(x),
        num_samples=num_samples,
        exact_mean=exact,
    )
    if warn and result.collapsed:
        warnings.warn(_collapse_message(result), PosteriorCollapseWarning, stacklevel=2)
    return result


def _collapse_message(result: ActiveUnits) -> str:
    """The warning's text for a collapsed result: what was measured and what it means."""
    kl = "" if result.kl is None or math.isnan(result.kl) else f", average KL {result.kl:.4f}"
    return (
        f"posterior collapse: {result.count} of {result.latent_dim} latent units active "
        f"(Var_x E_q[z_u] > {result.threshold:g}){kl} nats on {result.num_points} points: "
        "the latent carries (almost) nothing about x and the decoder models the data without "
        "it; try KL warm-up (warmup_steps, --kl-warmup) or a less flexible likelihood"
    )


def collapse_report(vae: Any, x: Tensor, context: Tensor | None = None) -> tuple[dict, str | None]:
    """:func:`active_units` as a report: the counts as a JSON-ready dict, and the text of
    the :class:`PosteriorCollapseWarning` (``None`` without one), which is also raised
    again, so that a command that records it still lets the user see it.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(4, latent_dim=2)
        >>> units, collapse = collapse_report(vae, torch.randn(32, 4))
        >>> units["latent_dim"], collapse is None or collapse.startswith("posterior collapse")
        (2, True)
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PosteriorCollapseWarning)
        units = active_units(vae, x, context)
    collapse = None
    for warning in caught:
        if issubclass(warning.category, PosteriorCollapseWarning):
            collapse = str(warning.message)
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return units.to_dict(), collapse
