r"""Activation normalization (Glow's ActNorm) with data-dependent initialisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from pyro.distributions import TransformModule, constraints
from torch import Tensor

from ._events import real_event

__all__ = ["ActNorm", "actnorm"]


class ActNorm(TransformModule):
    r"""A per-feature affine map whose first scoring batch sets it to standardise
    the data (Glow's activation normalization).

    In the generative direction (the forward call, :math:`x = g(z)`) and the
    inference direction (the inverse, applied to data by ``log_prob``),

    .. math:: x = z \odot e^{\ell} + \mu, \qquad z = (x - \mu) \odot e^{-\ell},
        \qquad \log |\det \partial x / \partial z| = S \textstyle\sum_c \ell_c ,

    with one :math:`(\mu_c, \ell_c)` per feature :math:`c`, shared by the
    :math:`S` positions of the event: :math:`S = 1` for vectors (``event_dim=1``,
    features = last dimension), :math:`S = HW` for images (``event_dim=3``,
    ``(C, H, W)``, features = channels). Any ``event_dim >= 1`` works the same
    way: the features are dimension ``-event_dim``, the rest are positions. (Glow
    writes the layer data-to-latent, :math:`y = s \odot x + b`; here
    :math:`e^{-\ell} = s`.)

    Data-dependent initialisation: the first time the layer runs in the inference
    direction (``_inverse``, i.e. scoring data), before transforming, it sets
    :math:`\mu_c` to the per-feature mean and :math:`e^{\ell_c}` to the
    per-feature standard deviation (plus ``eps``) of that batch, statistics taken
    over the batch and position dimensions, so the batch leaves with zero mean and
    unit variance per feature. If the first call is the forward direction
    (sampling before any data was seen), the layer keeps its current parameters
    (the identity, unless they were changed) and is marked initialised too, so a
    later scoring call does not move it. The flag is the boolean buffer
    ``initialized``: it is saved in ``state_dict`` and restored by
    ``load_state_dict``, so a reloaded layer does not initialise again.

    Costs: one elementwise pass in each direction; the log-det is :math:`O(C)`.

    Arguments:
        num_features: The number of features :math:`C`.
        event_dim: The event rank: 1 for vectors ``(C,)``, 3 for images
            ``(C, H, W)``.
        eps: Added to the standard deviation at initialisation, so that a
            constant feature gives a finite (large) scale instead of a division
            by zero.

    References:
        | Glow: Generative Flow with Invertible 1x1 Convolutions (Kingma et al., 2018)
        | https://arxiv.org/abs/1807.03039

    Example:
        >>> t = ActNorm(2)
        >>> x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
        >>> t.inv(x).detach()  # the first batch scored initialises the layer
        tensor([[-1.0000, -1.0000],
                [ 1.0000,  1.0000]])
        >>> bool(t.initialized)
        True
    """

    bijective = True

    def __init__(self, num_features: int, event_dim: int = 1, eps: float = 1e-6) -> None:
        super().__init__(cache_size=1)
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be an integer >= 1, got {num_features!r}")
        if isinstance(event_dim, bool) or not isinstance(event_dim, int) or event_dim < 1:
            raise ValueError(
                f"event_dim must be an integer >= 1 (1: vectors, 3: images), got {event_dim!r}"
            )
        if not (isinstance(eps, (int, float)) and eps >= 0):
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
        self.num_features = num_features
        self._event_dim = event_dim
        self.eps = float(eps)
        self.loc = torch.nn.Parameter(torch.zeros(num_features))
        self.log_scale = torch.nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(False))
        # a Python mirror of the buffer once it is known to be True: reading the
        # buffer on every call would synchronise with the device each time
        self._known_initialized = False

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, event_dim={self._event_dim}"

    @constraints.dependent_property(is_discrete=False)
    def domain(self) -> constraints.Constraint:
        return real_event(self._event_dim)

    @constraints.dependent_property(is_discrete=False)
    def codomain(self) -> constraints.Constraint:
        return real_event(self._event_dim)

    # -- initialisation --------------------------------------------------------

    def _is_initialized(self) -> bool:
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized)
        return self._known_initialized

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # read the loaded buffer on the next call

    def mark_initialized(self) -> None:
        """Keep the current parameters: the next scoring batch does not initialise the layer.

        For parameters that come from elsewhere (a loaded param store, a copied
        ``state_dict`` without the ``initialized`` buffer): a data-dependent
        initialisation would overwrite trained values.
        """
        self.initialized.fill_(True)
        self._known_initialized = True

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        """Set loc and log_scale to the per-feature mean and log standard deviation of x."""
        feature_axis = x.dim() - self._event_dim
        dims = tuple(d for d in range(x.dim()) if d != feature_axis)
        count = x.numel() // self.num_features
        if count < 2:
            raise ValueError(
                "ActNorm initialises from the first batch it scores, which needs at least 2 "
                f"values per feature; got x of shape {tuple(x.shape)}"
            )
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, correction=0)
        if not bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
            raise ValueError("x, the batch that initialises ActNorm, contains NaN or inf")
        self.loc.copy_(mean)
        self.log_scale.copy_(torch.log(std + self.eps))
        self.mark_initialized()

    # -- the transform ---------------------------------------------------------

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() < self._event_dim or x.shape[x.dim() - self._event_dim] != self.num_features:
            raise ValueError(
                f"{name} must have {self.num_features} features at dimension "
                f"-{self._event_dim} (event_dim={self._event_dim}), got shape {tuple(x.shape)}"
            )

    def _per_feature(self, p: Tensor) -> Tensor:
        return p.reshape(self.num_features, *(1,) * (self._event_dim - 1))

    def _call(self, x: Tensor) -> Tensor:
        self._check(x, "z")
        if not self._is_initialized():
            self.mark_initialized()  # sampling first: keep the current parameters
        return x * self._per_feature(self.log_scale).exp() + self._per_feature(self.loc)

    def _inverse(self, y: Tensor) -> Tensor:
        self._check(y, "x")
        if not self._is_initialized():
            self._initialize(y)
        return (y - self._per_feature(self.loc)) * self._per_feature(-self.log_scale).exp()

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        event_dim = self._event_dim
        positions = math.prod(x.shape[x.dim() - event_dim + 1 :])
        return (positions * self.log_scale.sum()).expand(x.shape[: x.dim() - event_dim])

    def _memory_saving_backward(
        self,
        out: Tensor,
        grad_out: Tensor,
        grad_log_det: Tensor,
        leaves: Sequence[Tensor],
        inverse: bool,
    ) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
        """The backward step of a memory-saving stack, in closed form: the input
        rebuilt from the output ``out`` of the inverse (``inverse``) or of the forward
        call, the input's gradient and those of ``leaves`` (``loc``, ``log_scale``)."""
        with torch.no_grad():
            loc, log_scale = self._per_feature(self.loc), self._per_feature(self.log_scale)
            shape = out.shape
            if out.dim() == self._event_dim:  # one event: give it a batch dimension to sum
                out, grad_out = out.unsqueeze(0), grad_out.unsqueeze(0)
            axis = out.dim() - self._event_dim
            dims = tuple(d for d in range(out.dim()) if d != axis)
            positions = math.prod(out.shape[axis + 1 :])
            grad_l = positions * grad_log_det.sum()
            if inverse:  # out = (y - loc) e^{-l}
                rebuilt = out * log_scale.exp() + loc
                grad_in = grad_out * (-log_scale).exp()
                grad_loc = -grad_in.sum(dim=dims)
                grad_log_scale = -(grad_out * out).sum(dim=dims) + grad_l
            else:  # out = x e^{l} + loc
                rebuilt = (out - loc) * (-log_scale).exp()
                grad_in = grad_out * log_scale.exp()
                grad_loc = grad_out.sum(dim=dims)
                grad_log_scale = (grad_out * (out - loc)).sum(dim=dims) + grad_l
            rebuilt, grad_in = rebuilt.reshape(shape), grad_in.reshape(shape)
        own = {id(self.loc): grad_loc, id(self.log_scale): grad_log_scale}
        return rebuilt, grad_in, tuple(own.get(id(leaf)) for leaf in leaves)


def actnorm(num_features: int, event_dim: int = 1) -> ActNorm:
    r"""Build an :class:`ActNorm` layer (the identity until its first scoring batch).

    Arguments:
        num_features: The number of features (channels for images).
        event_dim: 1 for vectors, 3 for images ``(C, H, W)``.

    Example:
        >>> t = actnorm(3, event_dim=3)
        >>> z = t.inv(5.0 + 2.0 * torch.randn(8, 3, 4, 4))
        >>> bool(z.mean(dim=(0, 2, 3)).abs().max() < 1e-5)
        True
    """
    return ActNorm(num_features, event_dim=event_dim)
