r"""The dense network of the coupling layers of vector flows."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.checks import check_int, check_number

__all__ = ["CouplingMLP"]


class CouplingMLP(nn.Module):
    r"""A multi-layer perceptron from a vector (and a context) to ``num_outputs``
    vectors of the input's size, whose last layer starts at zero.

    .. math:: (t_1, \dots, t_k) = W_L\, a(\dots a(W_1 [x, c] + b_1) \dots) + b_L,
        \qquad W_L = 0,\ b_L = 0 \text{ at initialisation,}

    so a coupling layer built on it starts as the identity (Glow's zero
    initialisation, Kingma & Dhariwal, 2018, section 3.3). The context :math:`c`,
    when ``context_dim`` is given, is concatenated to the input, as in Pyro's
    ``ConditionalDenseNN``.

    Pyro's ``DenseNN`` computes the same function; this one exists for speed:
    ``DenseNN`` slices its ``ModuleList`` (building a new one) and reshapes each
    output chunk on every call. Here the layers are one ``nn.Sequential`` and the
    outputs are views from one ``chunk`` (measured: benchmarks/README.md).

    Arguments:
        input_dim: The size :math:`D` of the input vector.
        hidden_dims: The hidden layer sizes (at least one).
        num_outputs: How many vectors of size :math:`D` to return: a tuple of them
            if more than one, the tensor itself if one.
        context_dim: The size of a context concatenated to the input, or ``None``.
        dropout: The dropout probability after each hidden activation (Srivastava et
            al., 2014): a regulariser for small data, active in ``train()`` mode only,
            so a flow's density is deterministic when evaluated in ``eval()`` mode.
        activation: The activation module's constructor.

    Example:
        >>> net = CouplingMLP(3, [16, 16], num_outputs=2)
        >>> shift, raw_scale = net(torch.randn(5, 3))
        >>> shift.shape, bool((raw_scale == 0).all())
        (torch.Size([5, 3]), True)
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        num_outputs: int = 2,
        context_dim: int | None = None,
        activation: Callable[[], nn.Module] = nn.ReLU,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_dim = check_int(input_dim, "input_dim", 1)
        self.dropout = check_number(dropout, "dropout", minimum=0.0, maximum=0.999)
        self.num_outputs = check_int(num_outputs, "num_outputs", 1)
        if context_dim is not None:
            check_int(context_dim, "context_dim", 1)
        self.context_dim = context_dim
        hidden = list(hidden_dims)
        if not hidden:
            raise ValueError("hidden_dims must name at least one hidden layer, got []")
        for h in hidden:
            check_int(h, "each of hidden_dims", 1)
        widths = [input_dim + (context_dim or 0), *hidden]
        layers: list[nn.Module] = []
        for before, after in itertools.pairwise(widths):
            layers += [nn.Linear(before, after), activation()]
        layers.append(nn.Linear(widths[-1], num_outputs * input_dim))
        self.layers = nn.Sequential(*layers)
        with torch.no_grad():
            self.layers[-1].weight.zero_()
            self.layers[-1].bias.zero_()

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, num_outputs={self.num_outputs}, "
            f"context_dim={self.context_dim}"
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor | tuple[Tensor, ...]:
        """``x`` of shape ``batch + (D,)``; ``context`` of shape ``batch + (context_dim,)``
        (the same batch shape) exactly when ``context_dim`` was given."""
        if (context is None) != (self.context_dim is None):
            raise ValueError(
                f"this network was built with context_dim={self.context_dim}: "
                + ("call it with a context" if context is None else "it takes no context")
            )
        if x.shape[-1:] != (self.input_dim,):
            raise ValueError(
                f"x must have shape batch + ({self.input_dim},), got {tuple(x.shape)}"
            )
        if context is not None:
            if context.shape[-1:] != (self.context_dim,):
                raise ValueError(
                    f"context must have shape batch + ({self.context_dim},), "
                    f"got {tuple(context.shape)}"
                )
            x = torch.cat([x, context], dim=-1)
        if self.dropout:  # after each activation; the layers' state_dict keys stay as they are
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i % 2 == 1:
                    x = F.dropout(x, self.dropout, self.training)
            out = x
        else:
            out = self.layers(x)
        return out.chunk(self.num_outputs, dim=-1) if self.num_outputs > 1 else out
