"""Dropout in the coupling networks: a regulariser in train() mode, the identity in eval()."""

from __future__ import annotations

import pytest
import torch

from pyro_dgm.nn import ConditionalCouplingConvNet, ConvResNet, CouplingConvNet, CouplingMLP
from pyro_dgm.transforms import checkerboard_mask


def _nonzero_last_layer(net: torch.nn.Module) -> None:
    """Coupling networks start at exactly zero; give the last layer weights to see through."""
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.normal_()
        last.bias.normal_()


@pytest.mark.parametrize(
    "build, inputs",
    [
        (lambda p: CouplingMLP(3, [64, 64], dropout=p), lambda: (torch.randn(8, 3),)),
        (lambda p: ConvResNet(2, 2, hidden_channels=16, num_blocks=2, dropout=p),
         lambda: (torch.randn(4, 2, 6, 6),)),
        (lambda p: CouplingConvNet(checkerboard_mask(4, 4, 2), hidden_channels=16, dropout=p),
         lambda: (torch.randn(4, 2, 4, 4),)),
        (lambda p: ConditionalCouplingConvNet(checkerboard_mask(4, 4), 2, hidden_channels=8,
                                              dropout=p),
         lambda: (torch.randn(4, 1, 4, 4), torch.randn(4, 32))),
    ],
    ids=["mlp", "resnet", "coupling_conv", "conditional_coupling_conv"],
)  # fmt: skip
def test_dropout_is_random_in_training_and_off_in_eval(build, inputs) -> None:
    torch.manual_seed(0)
    net = build(0.5)
    _nonzero_last_layer(net)
    args = inputs()

    def out() -> torch.Tensor:
        y = net(*args)
        return torch.cat([t.flatten() for t in y]) if isinstance(y, tuple) else y.flatten()

    net.train()
    assert not torch.equal(out(), out())  # two draws of the dropout mask differ
    net.eval()
    assert torch.equal(out(), out())
    plain = build(0.0)
    plain.load_state_dict(net.state_dict())  # dropout has no parameters: the same weights
    plain.eval()
    torch.testing.assert_close(net(*args), plain(*args))


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5", True])
def test_dropout_out_of_range_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="dropout: expected"):
        CouplingMLP(3, [8], dropout=bad)
    with pytest.raises(ValueError, match="dropout: expected"):
        ConvResNet(1, 1, dropout=bad)


def _reference_resnet(net: ConvResNet, x: torch.Tensor) -> torch.Tensor:
    """The network's function written out of place, from its own weights."""
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    conv = torch.nn.functional.conv2d
    h = conv(x, convs[0].weight, convs[0].bias, padding=1)
    for i in range(1, len(convs) - 1, 2):
        inner = conv(torch.relu(h), convs[i].weight, convs[i].bias, padding=1)
        h = h + conv(torch.relu(inner), convs[i + 1].weight, convs[i + 1].bias, padding=1)
    return conv(torch.relu(h), convs[-1].weight, convs[-1].bias, padding=1)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_conv_resnet_in_place_steps_keep_input_and_gradients(dropout) -> None:
    # the ReLUs after convolutions and the residual sums run in place: the input must be
    # untouched and the gradients those of the same function computed out of place
    torch.manual_seed(0)
    net = ConvResNet(3, 2, hidden_channels=8, num_blocks=2, dropout=dropout).double().eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)  # the last layer starts at zero: make it count
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    out = net(x)
    assert torch.equal(x.detach(), before)
    expected = _reference_resnet(net, x)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [x, *net.parameters()])
    reference = torch.autograd.grad((expected * weights).sum(), [x, *net.parameters()])
    for got, want in zip(grads, reference, strict=True):
        torch.testing.assert_close(got, want)
