r"""An autoregressive distribution as a Pyro model/guide pair: exact maximum likelihood."""

from __future__ import annotations

from typing import Any

import pyro
from torch import Tensor, nn

from ..distributions.autoregressive import AutoregressiveModule, PixelCNN, WaveNet
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

    def model(self, x: Tensor, context: Tensor | None = None) -> None:
        register_module(self.name, self.module)
        shape = self.module.event_shape
        if x.dim() != len(shape) + 1 or x.shape[1:] != shape:
            raise ValueError(
                f"x: expected shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}"
            )
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", self.module(context), obs=x)

    def guide(self, x: Tensor, context: Tensor | None = None) -> None:
        """Empty: the model has no latent variable."""

    def sample(
        self, num_samples: int, context: Tensor | None = None, method: str = "cached"
    ) -> Tensor:
        """Draw ``num_samples`` integer arrays (floats holding levels; no gradient)."""
        return self.module(context).sample((num_samples,), method=method)


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
