r"""A bridge from zuko's lazy transformations to Pyro ``TransformModule``\ s.

zuko (Rozet et al.) builds flows from *lazy* transformations: modules whose
forward pass ``lazy(c)`` returns a :class:`torch.distributions.Transform` for a
context :math:`c` (or ``None``). zuko orients them in the **inference**
direction: a :class:`zuko.distributions.NormalizingFlow` scores

.. math:: \log p(x) = \log p_Z(f(x)) + \log \left| \det J_f(x) \right|

with :math:`f = \texttt{lazy}(c)` mapping data to the base, and samples through
:math:`f^{-1}`. pyro_dgm and Pyro orient a transform the other way: the forward
call is the **generative** direction :math:`x = g(z)`. :class:`ZukoTransform`
flips it, so any unconditional zuko layer (``MaskedAutoregressiveTransform``, an
NSF or NAF layer, or a whole flow's ``.transform``) joins a Pyro
``TransformedDistribution``, ``pyro.module``, ``SVI`` and autoguides, stacked with
Pyro's and pyro_dgm's own layers. :class:`ConditionalZukoTransform` does the same
for zuko layers built with ``context > 0``.

Example:
    >>> import pyro.distributions as dist
    >>> import torch
    >>> import zuko
    >>> layer = ZukoTransform(zuko.flows.MaskedAutoregressiveTransform(features=3))
    >>> base = dist.Normal(torch.zeros(3), 1.0).to_event(1)
    >>> d = dist.TransformedDistribution(base, [layer])
    >>> d.log_prob(d.rsample((5,))).shape
    torch.Size([5])

References:
    | Zuko: Normalizing flows in PyTorch (Rozet et al., 2022)
    | https://doi.org/10.5281/zenodo.7625672

    | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
    | https://arxiv.org/abs/1705.07057

    | Neural Spline Flows (Durkan et al., 2019)
    | https://arxiv.org/abs/1906.04032

    | Neural Autoregressive Flows (Huang et al., 2018)
    | https://arxiv.org/abs/1804.00779
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from pyro.distributions import ConditionalTransformModule, TransformModule
from torch import Tensor, nn
from torch.distributions import Transform, constraints
from torch.distributions.utils import _sum_rightmost

from ..utils.zuko_import import import_zuko

import_zuko()  # before any zuko module: zuko would switch off torch's validation

from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.flows.continuous import FFJTransform
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.flows.gaussianization import ElementWiseTransform
from zuko.lazy import LazyComposedTransform, LazyInverse, LazyTransform, UnconditionalTransform

__all__ = [
    "ConditionalZukoTransform",
    "ConditionedZukoTransform",
    "ZukoTransform",
    "double_inversion",
    "zuko_transform",
]

Direction = Literal["maf", "iaf"]
_DIRECTIONS = ("maf", "iaf")


# ---------------------------------------------------------------------------
# what a lazy transform expects: (features, context) read from zuko's modules
# ---------------------------------------------------------------------------


def _zuko_dims(lazy: LazyTransform) -> tuple[int | None, int | None]:
    """The (features, context) sizes of a zuko lazy transform, ``None`` where unknown.

    zuko's layers do not store their ``context`` argument; it is read back from
    the input size of their hyper-network, which is ``features + context`` (the
    layout zuko 1.x builds). Unknown lazy types give ``(None, None)``.
    """
    if isinstance(lazy, LazyInverse):
        return _zuko_dims(lazy.transform)
    if isinstance(lazy, UnconditionalTransform):
        return None, 0
    if isinstance(lazy, MaskedAutoregressiveTransform):
        features = lazy.hyper.out_features // lazy.total
        return features, lazy.hyper.in_features - features
    if isinstance(lazy, GeneralCouplingTransform):
        features_a = int(lazy.mask.sum())
        return lazy.mask.numel(), lazy.hyper.in_features - features_a
    if isinstance(lazy, ElementWiseTransform):
        if hasattr(lazy, "hyper"):
            return lazy.hyper.out_features // lazy.total, lazy.hyper.in_features
        return lazy.phi[0].shape[0], 0
    if isinstance(lazy, FFJTransform):
        features = lazy.ode.out_features
        return features, lazy.ode.in_features - features - lazy.freqs.numel() * 2
    if isinstance(lazy, LazyComposedTransform):
        dims = [_zuko_dims(t) for t in lazy.transforms]
        features = next((f for f, _ in dims if f is not None), None)
        contexts = [c for _, c in dims]
        needing = [c for c in contexts if c]  # layers that take a context
        if needing:
            return features, needing[0]
        return features, 0 if all(c == 0 for c in contexts) else None
    return None, None


def _needs_context(lazy: LazyTransform, input_dim: int | None) -> bool:
    """Whether ``lazy`` needs a context: from zuko's layer sizes, else by a probe."""
    _, context = _zuko_dims(lazy)
    if context is not None:
        return context > 0
    if input_dim is None:
        raise ValueError(
            f"lazy_transform: cannot tell whether a {type(lazy).__name__} needs a context; "
            "expected input_dim (to probe it) or an explicit ZukoTransform / "
            "ConditionalZukoTransform, got neither"
        )
    # The probe: an unconditional lazy transform maps a zero vector with c=None;
    # one that needs a context fails (its network gets too few inputs).
    probe = torch.zeros(1, input_dim, dtype=_dtype_of(lazy))
    try:
        with torch.no_grad():
            lazy(None)(probe)
    except (RuntimeError, TypeError, ValueError, IndexError):
        return True
    return False


def _dtype_of(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _check_lazy(lazy: object, direction: object) -> None:
    if not isinstance(lazy, LazyTransform):
        # the project's convention: bad input of any kind is a ValueError
        raise ValueError(
            "lazy_transform: expected a zuko.lazy.LazyTransform (e.g. "
            "zuko.flows.MaskedAutoregressiveTransform(features=4), or a flow's .transform), "
            f"got {type(lazy).__name__}"
        )
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction: expected 'maf' or 'iaf', got {direction!r}")


def _warn_if_inverted(lazy: LazyTransform, direction: str) -> None:
    """Warn once per module built: an inverted zuko transformation in ``"iaf"`` flips twice."""
    message = double_inversion(lazy, direction, "lazy_transform")
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=3)


def double_inversion(lazy: object, direction: str, name: str) -> str | None:
    """What to do when an already-inverted zuko transformation is given ``direction="iaf"``
    (a message naming ``name``), or ``None`` when the pair is fine.

    zuko's ``lazy.inv`` (a ``LazyInverse``, as Pyro's flow-guide tutorial makes with
    ``flow.transform = flow.transform.inv``) already swaps sampling and scoring;
    ``direction="iaf"`` swaps them back, so sampling takes the slow direction again.

    Example:
        >>> import zuko
        >>> lazy = zuko.flows.MAF(2, transforms=1).transform
        >>> double_inversion(lazy, "iaf", "flow") is None
        True
        >>> double_inversion(lazy.inv, "iaf", "flow").startswith("flow: its zuko transformation")
        True
    """
    if direction != "iaf" or not isinstance(lazy, LazyInverse):
        return None
    return (
        f"{name}: its zuko transformation is already inverted (a zuko LazyInverse, as "
        "after `flow.transform = flow.transform.inv`), and direction='iaf' inverts it "
        "again: sampling would take the slow direction (D sequential passes per "
        "autoregressive layer). Keep the .inv with direction='maf' (the default), or drop "
        "the .inv and keep direction='iaf': both sample in one pass per layer"
    )


# ---------------------------------------------------------------------------
# the shared logic: direction flip, log-det, a one-entry log-det cache
# ---------------------------------------------------------------------------


class _ZukoBridge(Transform):
    r"""What :class:`ZukoTransform` and :class:`ConditionedZukoTransform` share.

    Subclasses set ``lazy``, ``direction``, ``_context`` and ``_features``, then
    call :meth:`_reset_cache`, after ``Transform.__init__(cache_size=...)``.

    Caching. torch/Pyro's one-entry cache is keyed by tensor identity only, so
    scoring the *same* data tensor again after an optimizer step returns the
    value computed with the old parameters (with a freed graph, or none at all
    if the first score ran under ``torch.no_grad()``, as ``SVI.evaluate_loss``
    does): full-batch maximum likelihood silently stops training. Here an entry
    is also stamped with the parameters' version counters and storage, and with
    whether autograd was recording; it is reused only while the parameters are
    unchanged and, when a gradient is needed now, only if it was recorded with
    one. Still one entry, replaced at every call.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    lazy: LazyTransform
    direction: Direction
    _context: Tensor | None
    _features: int | None
    _cache_stamp: tuple | None
    _ladj_memo: tuple[Tensor, Tensor, Tensor, tuple] | None

    def _reset_cache(self) -> None:
        self._cache_stamp = None
        self._ladj_memo = None

    # -- cache freshness ----------------------------------------------------

    def _stamp(self) -> tuple:
        params = tuple(self.lazy.parameters())
        versions = tuple((p._version, p.data_ptr(), p.dtype) for p in params)
        needs_graph = torch.is_grad_enabled() and (
            any(p.requires_grad for p in params)
            or (self._context is not None and self._context.requires_grad)
        )
        return versions, needs_graph

    @staticmethod
    def _fresh(old: tuple | None, now: tuple) -> bool:
        if old is None:
            return False
        (old_versions, had_graph), (versions, needs_graph) = old, now
        return old_versions == versions and (had_graph or not needs_graph)

    def __call__(self, x: Tensor) -> Tensor:
        if self._cache_size == 0:
            return self._call(x)
        stamp = self._stamp()
        x_old, y_old = self._cached_x_y
        if x is x_old and self._fresh(self._cache_stamp, stamp):
            return y_old
        y = self._call(x)
        self._cached_x_y, self._cache_stamp = (x, y), stamp
        return y

    def _inv_call(self, y: Tensor) -> Tensor:
        if self._cache_size == 0:
            return self._inverse(y)
        stamp = self._stamp()
        x_old, y_old = self._cached_x_y
        if y is y_old and self._fresh(self._cache_stamp, stamp):
            return x_old
        x = self._inverse(y)
        self._cached_x_y, self._cache_stamp = (x, y), stamp
        return x

    def _remember(self, x: Tensor, y: Tensor, ladj: Tensor) -> None:
        # One entry, replaced on every call: the log-det of the last pair, Pyro-style
        # (AffineAutoregressive keeps `_cached_log_scale` the same way).
        if self._cache_size == 1:
            self._ladj_memo = (x, y, ladj, self._stamp())

    # -- the zuko transformation ----------------------------------------------

    def _zuko(self) -> Transform:
        """zuko's transformation ``lazy(c)`` (data -> base in zuko's own use)."""
        t = self.lazy(self._context)
        if t.domain.event_dim > 1 or t.codomain.event_dim > 1:
            raise ValueError(
                f"lazy_transform: expected a zuko transformation on vectors (event_dim <= 1), "
                f"got domain event_dim {t.domain.event_dim}, "
                f"codomain event_dim {t.codomain.event_dim}"
            )
        return t

    def _prepare(self, value: Tensor, name: str) -> Tensor:
        """Check ``value`` and broadcast its batch shape against the context's."""
        if not isinstance(value, Tensor) or value.dim() < 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name}: expected a tensor of shape (..., features), got {shape}")
        if self._features is not None and value.shape[-1] != self._features:
            raise ValueError(
                f"{name}: expected a last dimension of {self._features} features, "
                f"got shape {tuple(value.shape)}"
            )
        if self._context is None:
            return value
        # zuko broadcasts values and context inside its network, but some of its
        # univariate transforms size their log-det by the values alone
        batch = torch.broadcast_shapes(value.shape[:-1], self._context.shape[:-1])
        return value.expand(*batch, value.shape[-1])

    @staticmethod
    def _event_ladj(t: Transform, ladj: Tensor) -> Tensor:
        # an element-wise zuko transform (event_dim 0) returns one ladj per feature
        return _sum_rightmost(ladj, 1 - t.domain.event_dim)

    @staticmethod
    def _call_and_ladj(t: Transform, value: Tensor) -> tuple[Tensor, Tensor]:
        # zuko's NAF layers take their Jacobian by autograd under torch.enable_grad():
        # without this, a value computed under torch.no_grad() (``.sample()``) would come
        # back with requires_grad=True and a graph attached to the parameters
        y, ladj = t.call_and_ladj(value)
        if not torch.is_grad_enabled():
            y, ladj = y.detach(), ladj.detach()
        return y, ladj

    @staticmethod
    def _zuko_inverse(t: Transform, value: Tensor) -> Tensor:
        x = t.inv(value)
        return x if torch.is_grad_enabled() else x.detach()

    def _call(self, x: Tensor) -> Tensor:
        xb = self._prepare(x, "x")
        t = self._zuko()
        if self.direction == "iaf":
            # zuko's forward is the generative direction
            y, ladj = self._call_and_ladj(t, xb)
            self._remember(x, y, self._event_ladj(t, ladj))
            return y
        return self._zuko_inverse(t, xb)

    def _inverse(self, y: Tensor) -> Tensor:
        yb = self._prepare(y, "y")
        t = self._zuko()
        if self.direction == "iaf":
            return self._zuko_inverse(t, yb)
        x, ladj = self._call_and_ladj(t, yb)  # zuko's forward is the inference direction
        self._remember(x, y, -self._event_ladj(t, ladj))
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        r""":math:`\log |\det \partial y / \partial x|` of the generative map ``x -> y``,
        with the batch shape of ``x``."""
        memo = self._ladj_memo
        fresh = memo is not None and x is memo[0] and y is memo[1]
        if fresh and self._fresh(memo[3], self._stamp()):
            return memo[2]
        t = self._zuko()
        if self.direction == "iaf":
            _, ladj = self._call_and_ladj(t, self._prepare(x, "x"))
            return self._event_ladj(t, ladj)
        _, ladj = self._call_and_ladj(t, self._prepare(y, "y"))
        return -self._event_ladj(t, ladj)


_COSTS = r"""
    Costs, for a zuko autoregressive layer on :math:`D` features (MAF, NSF and
    NAF layers are ``MaskedAutoregressiveTransform``\ s):

    ========================  ==============================  ==============================
    orientation               sampling (forward call)         scoring a new value (inverse)
    ========================  ==============================  ==============================
    ``"maf"`` (default)       :math:`D` sequential passes     one network pass
    ``"iaf"``                 one network pass                :math:`D` sequential passes
    ========================  ==============================  ==============================

    A NAF layer's univariate inverse is a bisection on :math:`[-10, 10]` (zuko's
    ``MonotonicTransform``: 25 steps, absolute tolerance 1e-6), so its slow
    direction costs :math:`25 D` network calls and is accurate to about 1e-6, in
    float64 too; a value whose preimage lies outside :math:`[-10, 10]` gets the
    bound back from zuko, without an error. A coupling layer is one pass both
    ways. The log-determinant costs one more pass when it is not remembered; a
    sample scored by the same transform object reuses the cache and never takes
    the slow direction, unless it was drawn without autograd (``.sample()``) and
    is scored where a gradient is needed.
"""


class ZukoTransform(_ZukoBridge, TransformModule):
    __doc__ = (
        r"""Wraps an unconditional zuko lazy transformation as a Pyro ``TransformModule``.

    With zuko's transformation :math:`f = \texttt{lazy}()` (data to base, zuko's
    inference direction), orientation ``"maf"`` gives the generative map

    .. math:: x = g(z) = f^{-1}(z), \qquad
        \log \left| \det J_g(z) \right| = -\log \left| \det J_f(x) \right| ,

    so ``TransformedDistribution(base, [ZukoTransform(lazy)])`` scores
    :math:`\log p_Z(f(x)) + \log |\det J_f(x)|`, exactly zuko's
    ``NormalizingFlow(lazy(), base)``. Orientation ``"iaf"`` uses :math:`f` itself
    as the generative map (:math:`x = f(z)`), which makes sampling the cheap
    direction of an autoregressive layer (the IAF of Kingma et al., 2016). The
    lazy module is a registered submodule: ``pyro.module``, ``state_dict``,
    ``.to`` and ``.double()`` see its parameters.
"""
        + _COSTS
        + r"""
    With ``cache_size=1`` the last ``(x, y)`` pair and its log-determinant are
    remembered (one entry, replaced at every call) and reused only for the very
    same tensor objects, while the parameters are unchanged, and never to give a
    gradient that was not recorded (see the note on caching below). The
    log-determinant is computed with zuko's ``call_and_ladj`` on the data side.

    Note:
        Pyro's own layers reuse their cache by tensor identity alone: scoring
        the same data tensor after an optimizer step (full-batch maximum
        likelihood, or ``SVI.evaluate_loss`` before ``SVI.step``) returns the
        old value and training stalls. This bridge stamps its cache entry with
        the parameters' version counters and the autograd mode instead.

    References:
        | Zuko: Normalizing flows in PyTorch (Rozet et al., 2022)
        | https://doi.org/10.5281/zenodo.7625672

        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

        | Improved Variational Inference with Inverse Autoregressive Flow (Kingma et al., 2016)
        | https://arxiv.org/abs/1606.04934

    Arguments:
        lazy_transform: An unconditional zuko ``LazyTransform`` on vectors of
            :math:`D` features, e.g. ``zuko.flows.MaskedAutoregressiveTransform(4)``
            or ``zuko.flows.NSF(4).transform``.
        direction: ``"maf"`` (zuko's orientation: scoring is cheap) or ``"iaf"``
            (the inverse orientation: sampling is cheap). An already-inverted zuko
            transformation (``lazy.inv``, a ``LazyInverse``) with ``"iaf"`` is flipped
            twice, back to zuko's own orientation, and warned about.
        cache_size: Pyro's transform cache size, 0 or 1.

    Example:
        >>> import zuko
        >>> t = ZukoTransform(zuko.flows.NSF(3, transforms=2).transform)
        >>> z = torch.randn(3)
        >>> torch.allclose(t.inv(t(z).clone()), z, atol=1e-5)
        True
    """
    )

    def __init__(
        self,
        lazy_transform: LazyTransform,
        direction: Direction = "maf",
        cache_size: int = 1,
    ) -> None:
        _check_lazy(lazy_transform, direction)
        if cache_size not in (0, 1):
            raise ValueError(f"cache_size: expected 0 or 1, got {cache_size!r}")
        _warn_if_inverted(lazy_transform, direction)
        features, context = _zuko_dims(lazy_transform)
        if context:
            raise ValueError(
                f"lazy_transform: expected an unconditional zuko transformation, got one with "
                f"a context of {context} features; use ConditionalZukoTransform"
            )
        super().__init__(cache_size=cache_size)
        self.lazy = lazy_transform
        self.direction = direction
        self._context = None
        self._features = features
        self._reset_cache()

    def __repr__(self) -> str:
        return nn.Module.__repr__(self)

    def extra_repr(self) -> str:
        return f"direction={self.direction!r}"


class ConditionedZukoTransform(_ZukoBridge):
    r"""A zuko lazy transformation bound to a context :math:`c`: ``lazy(c)``, flipped
    as in :class:`ZukoTransform`. Returned by
    :meth:`ConditionalZukoTransform.condition`; its parameters belong to that module.

    .. math:: x = g(z; c) = f(\,\cdot\,; c)^{-1}(z) \quad (\texttt{"maf"}), \qquad
        x = f(z; c) \quad (\texttt{"iaf"})

    Arguments:
        lazy_transform: A zuko ``LazyTransform`` that takes a context.
        context: A context of shape :math:`(*, C)`; its batch shape broadcasts
            against the values' batch shape.
        direction: ``"maf"`` or ``"iaf"``, as in :class:`ZukoTransform`.
        cache_size: Pyro's transform cache size, 0 or 1.

    Example:
        >>> import zuko
        >>> lazy = zuko.flows.MaskedAutoregressiveTransform(3, context=2)
        >>> t = ConditionedZukoTransform(lazy, torch.randn(4, 2))
        >>> z = torch.randn(6, 1, 3)  # values (6, 1) against the context's (4,)
        >>> x = t(z)
        >>> x.shape, t.log_abs_det_jacobian(z, x).shape
        (torch.Size([6, 4, 3]), torch.Size([6, 4]))
    """

    def __init__(
        self,
        lazy_transform: LazyTransform,
        context: Tensor,
        direction: Direction = "maf",
        cache_size: int = 1,
    ) -> None:
        _check_lazy(lazy_transform, direction)
        super().__init__(cache_size=cache_size)
        self.lazy = lazy_transform
        self.direction = direction
        self._context = context
        self._features, _ = _zuko_dims(lazy_transform)
        self._reset_cache()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.lazy).__name__}, "
            f"context shape {tuple(self._context.shape)}, direction={self.direction!r})"
        )


class ConditionalZukoTransform(ConditionalTransformModule):
    __doc__ = (
        r"""Wraps a zuko lazy transformation that takes a context as a Pyro
    ``ConditionalTransformModule``.

    ``condition(c)`` returns :class:`ConditionedZukoTransform`, zuko's ``lazy(c)``
    flipped to the generative direction:

    .. math:: x = g(z \mid c) = f^{-1}(z \mid c) \quad (\text{"maf"}), \qquad
        x = f(z \mid c) \quad (\text{"iaf"}).

    A context of shape :math:`(*, C)` broadcasts against the batch shape of the
    values, as in zuko (``torch.cat`` of values and context inside the network).
"""
        + _COSTS
        + r"""
    References:
        | Zuko: Normalizing flows in PyTorch (Rozet et al., 2022)
        | https://doi.org/10.5281/zenodo.7625672

        | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
        | https://arxiv.org/abs/1705.07057

    Arguments:
        lazy_transform: A zuko ``LazyTransform`` built with a context, e.g.
            ``zuko.flows.MaskedAutoregressiveTransform(features=4, context=2)``.
        direction: ``"maf"`` (scoring is cheap) or ``"iaf"`` (sampling is cheap); an
            already-inverted ``lazy.inv`` with ``"iaf"`` is warned about, as in
            :class:`ZukoTransform`.

    Example:
        >>> import zuko
        >>> ct = ConditionalZukoTransform(zuko.flows.MaskedAutoregressiveTransform(3, 2))
        >>> ct.condition(torch.randn(5, 2))(torch.randn(5, 3)).shape
        torch.Size([5, 3])
    """
    )

    def __init__(self, lazy_transform: LazyTransform, direction: Direction = "maf") -> None:
        _check_lazy(lazy_transform, direction)
        _warn_if_inverted(lazy_transform, direction)
        features, context = _zuko_dims(lazy_transform)
        if context == 0:
            raise ValueError(
                "lazy_transform: expected a zuko transformation built with context > 0, got an "
                "unconditional one; use ZukoTransform"
            )
        super().__init__()
        self.lazy = lazy_transform
        self.direction = direction
        self._features = features
        self._context_dim = context

    def extra_repr(self) -> str:
        return f"direction={self.direction!r}"

    def condition(self, context: Tensor) -> ConditionedZukoTransform:
        """Bind the context: ``context`` of shape :math:`(*, C)`."""
        if not isinstance(context, Tensor) or context.dim() < 1:
            shape = tuple(context.shape) if isinstance(context, Tensor) else type(context)
            raise ValueError(
                f"context: expected a tensor of shape (..., context_dim), got {shape}"
            )
        if self._context_dim is not None and context.shape[-1] != self._context_dim:
            raise ValueError(
                f"context: expected a last dimension of {self._context_dim}, "
                f"got shape {tuple(context.shape)}"
            )
        return ConditionedZukoTransform(self.lazy, context, self.direction)


def zuko_transform(
    lazy_transform: LazyTransform,
    direction: Direction = "maf",
    input_dim: int | None = None,
) -> ZukoTransform | ConditionalZukoTransform:
    r"""Wrap a zuko lazy transformation as the right Pyro module.

    Returns a :class:`ConditionalZukoTransform` when ``lazy_transform`` needs a
    context, else a :class:`ZukoTransform`. How it tells: zuko's layers do not
    keep their ``context`` argument, so for zuko's own lazy layers
    (``MaskedAutoregressiveTransform`` and the MAF/NSF/NAF/... layers built on
    it, ``GeneralCouplingTransform``, ``ElementWiseTransform``, ``FFJTransform``,
    ``UnconditionalTransform``, and compositions and inverses of these) the
    context size is read from the hyper-network's input size
    (``features + context``). For any other lazy type, ``input_dim`` is needed:
    ``lazy_transform(None)`` is applied to a zero vector of that size, and a
    failure means a context is needed.

    .. math:: \texttt{zuko\_transform}(f) = \begin{cases}
        \text{ConditionalZukoTransform}(f) & f \text{ takes a context} \\
        \text{ZukoTransform}(f) & \text{otherwise} \end{cases}

    Arguments:
        lazy_transform: A zuko ``LazyTransform``.
        direction: ``"maf"`` (scoring is cheap) or ``"iaf"`` (sampling is cheap).
        input_dim: The number of features, used only to probe a lazy type the
            bridge does not know.

    Example:
        >>> import zuko
        >>> type(zuko_transform(zuko.flows.MAF(3, context=2).transform)).__name__
        'ConditionalZukoTransform'
    """
    _check_lazy(lazy_transform, direction)
    if input_dim is not None and (not isinstance(input_dim, int) or input_dim < 1):
        raise ValueError(f"input_dim: expected a positive integer, got {input_dim!r}")
    if _needs_context(lazy_transform, input_dim):
        return ConditionalZukoTransform(lazy_transform, direction)
    return ZukoTransform(lazy_transform, direction)
