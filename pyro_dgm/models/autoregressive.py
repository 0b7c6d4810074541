r"""An autoregressive distribution as a Pyro model/guide pair: exact maximum likelihood."""

from __future__ import annotations

from typing import Any

import pyro
import torch
from torch import Tensor, nn

from ..distributions.autoregressive import AutoregressiveModule, PixelCNN, WaveNet
from ..utils.checks import check_int
from ..utils.registration import register_module

__all__ = ["AUTOREGRESSIVE_MODELS", "AutoregressiveModel", "build_autoregressive"]

#: The names :func:`build_autoregressive` accepts (the command line's ``--model``).
AUTOREGRESSIVE_MODELS = ("pixelcnn", "wavenet")


class AutoregressiveModel(nn.Module):
    r"""Fit a :class:`~pyro_dgm.distributions.PixelCNN` or
    :class:`~pyro_dgm.distributions.WaveNet` to integer data by maximum likelihood.

    Mirrors :class:`~pyro_dgm.models.FlowModel`: the model observes every data point
    (site ``"x"``, inside the data plate ``"data"``, the outermost plate), the guide is
    empty. With no latent variable the ELBO *is* the exact log-likelihood,

    .. math:: \mathrm{ELBO}(y) = \log P(y) = \sum_d \log P(y_d \mid y_{<d}),

    so :func:`~pyro_dgm.infer.fit` minimises the exact negative log-likelihood and
    :func:`~pyro_dgm.infer.log_likelihood` reports it with ``bound="exact"``.

    Arguments:
        module: The autoregressive module.
        name: The name under which its parameters are registered.

    Example:
        >>> import torch
        >>> from pyro_dgm.distributions.autoregressive import PixelCNN
        >>> pair = AutoregressiveModel(PixelCNN((1, 4, 4), 5, hidden_channels=8, num_layers=1))
        >>> pair.model(torch.randint(0, 5, (3, 1, 4, 4)))
    """

    def __init__(self, module: AutoregressiveModule, name: str = "autoregressive") -> None:
        super().__init__()
        if not isinstance(module, AutoregressiveModule):
            raise ValueError(
                f"module: expected a PixelCNN or WaveNet, got {type(module).__name__}"
            )
        self.module = module
        self.name = name

    def _check_data(self, x: Tensor) -> None:
        shape = self.module.event_shape
        if not isinstance(x, Tensor) or x.dim() != len(shape) + 1 or x.shape[1:] != shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape (N, {', '.join(map(str, shape))}), got {got}")

    def model(self, x: Tensor, context: Tensor | None = None) -> None:
        """The model observes every data point: ``x ~ module(context)`` in the data plate."""
        register_module(self.name, self.module)
        self._check_data(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.module(context), obs=x)

    def guide(self, x: Tensor, context: Tensor | None = None) -> None:
        """Empty: the model has no latent variable."""

    def sample(
        self, num_samples: int, context: Tensor | None = None, method: str = "cached"
    ) -> Tensor:
        """Draw ``num_samples`` integer arrays (floats holding levels; no gradient).

        Example:
            >>> from pyro_dgm.distributions import WaveNet
            >>> pair = AutoregressiveModel(WaveNet((1, 6), 4, residual_channels=4, num_layers=2))
            >>> pair.sample(2).shape
            torch.Size([2, 1, 6])
        """
        return self.module(context).sample((num_samples,), method=method)

    @torch.no_grad()
    def posterior_predictive(
        self,
        x: Tensor,
        num_samples: int = 1,
        context: Tensor | None = None,
        method: str = "cached",
    ) -> Tensor:
        r"""New data drawn for each data point, ``(num_samples, N, *event_shape)``.

        With no latent variable the posterior predictive is the fitted model itself,
        :math:`P(\tilde y \mid y) = P(\tilde y)`, or :math:`P(\tilde y \mid c_i)` with
        each point's context (a class label): the draws depend on ``x`` only through
        its number of rows. ``pyro.infer.Predictive(pair.model)`` returns the observed
        ``x`` (Pyro's semantics); this draws what
        ``Predictive(poutine.uncondition(pair.model))`` does.

        Arguments:
            x: Data ``(N, *event_shape)``.
            num_samples: Draws per data point.
            context: One context per data point, ``(N, context_dim)``.
            method: The sampler, as in :meth:`sample`.

        Example:
            >>> from pyro_dgm.distributions import WaveNet
            >>> pair = AutoregressiveModel(WaveNet((1, 6), 4, residual_channels=4, num_layers=2))
            >>> pair.posterior_predictive(torch.zeros(3, 1, 6), num_samples=2).shape
            torch.Size([2, 3, 1, 6])
        """
        self._check_data(x)
        n = check_int(num_samples, "num_samples", 1)
        d = self.module(context)
        if d.batch_shape not in ((), x.shape[:1]):
            raise ValueError(
                f"context: expected one row per data point, batch shape ({len(x)},), got "
                f"batch shape {tuple(d.batch_shape)}"
            )
        shape = (n, len(x)) if d.batch_shape == () else (n,)
        return d.sample(shape, method=method)


def build_autoregressive(
    name: str, data: Any, hidden: int = 32, num_layers: int = 5, **kwargs: Any
) -> AutoregressiveModel:
    r"""The model/guide pair the command line's ``--model pixelcnn|wavenet`` builds.

    Arguments:
        name: ``"pixelcnn"`` (images :math:`(C, H, W)`) or ``"wavenet"`` (sequences
            :math:`(C, T)`).
        data: A discrete :class:`~pyro_dgm.datasets.Dataset` (``num_levels`` set).
        hidden: Feature maps per layer (``hidden_channels`` / ``residual_channels``),
            rounded up to a multiple of the data channels.
        num_layers: Gated blocks (PixelCNN) or dilated layers (WaveNet).
        kwargs: Passed on to :class:`~pyro_dgm.distributions.PixelCNN` or
            :class:`~pyro_dgm.distributions.WaveNet` (e.g. ``output="categorical"``).

    Returns:
        An :class:`AutoregressiveModel`.

    Raises:
        ValueError: An unknown ``name``, continuous data, or data of the wrong rank.

    Example:
        >>> from pyro_dgm import datasets
        >>> pair = build_autoregressive("pixelcnn", datasets.digits(), hidden=8, num_layers=1)
        >>> pair.sample(2).shape
        torch.Size([2, 1, 8, 8])
    """
    if name not in AUTOREGRESSIVE_MODELS:
        raise ValueError(f"name: expected one of {AUTOREGRESSIVE_MODELS}, got {name!r}")
    levels = getattr(data, "num_levels", None)
    data_name = getattr(data, "name", "data")
    if levels is None:
        raise ValueError(
            f"data: {name} models integer data; {data_name} is continuous (num_levels=None)"
        )
    shape = tuple(data.event_shape)
    channels = shape[0] if shape else 1
    hidden = -(-hidden // channels) * channels
    if name == "pixelcnn":
        if len(shape) != 3:
            raise ValueError(
                f"data: pixelcnn needs images (C, H, W); {data_name} has event shape {shape}"
                " (use --model wavenet for sequences)"
            )
        module = PixelCNN(shape, levels, hidden_channels=hidden, num_layers=num_layers, **kwargs)
    else:
        if len(shape) != 2:
            raise ValueError(
                f"data: wavenet needs sequences (C, T); {data_name} has event shape {shape}"
                " (digits as sequences: digit_sequences)"
            )
        module = WaveNet(shape, levels, residual_channels=hidden, num_layers=num_layers, **kwargs)
    return AutoregressiveModel(module, name=name)
