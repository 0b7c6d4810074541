"""pyro_dgm leaves torch's and Pyro's validation settings as Pyro ships them.

zuko switches torch's distribution validation off for the whole process when it is
imported; pyro_dgm imports zuko through :func:`pyro_dgm.utils.zuko_import.import_zuko`.
Each check runs in a fresh interpreter, since the test process has imported zuko.
"""

import subprocess
import sys
import textwrap

import pytest

PROBE = """
import torch
from torch.distributions import Distribution
import pyro.distributions as dist

def rejects(fn):
    try:
        fn()
    except ValueError:
        return True
    return False

{setup}
assert Distribution._validate_args is True, Distribution._validate_args
assert isinstance(Distribution.__dict__["arg_constraints"], property)
assert rejects(lambda: dist.Bernoulli(0.5).log_prob(torch.tensor(3.0)))
assert rejects(lambda: dist.Normal(0.0, -1.0))
assert torch.distributions.transforms._InverseTransform.__name__ == "_InverseTransform"
print("ok")
"""

SETUPS = {
    "import pyro_dgm": "import pyro_dgm",
    "the bridge in use": """
import pyro_dgm, zuko
from pyro_dgm.flows import ZukoFlow
flow = ZukoFlow(zuko.flows.NSF(2, transforms=1))
flow().log_prob(torch.zeros(3, 2)).sum().backward()
""",
    "zuko imported after pyro_dgm": "import pyro_dgm\nimport zuko\nimport zuko.distributions",
    "the CLI module": "import pyro_dgm.cli",
    "a discretized likelihood": """
from pyro_dgm.distributions import DiscretizedLogistic
assert rejects(lambda: DiscretizedLogistic(2.0, 1.0, 5).log_prob(torch.tensor(5.0)))
""",
}


@pytest.mark.parametrize("setup", list(SETUPS), ids=list(SETUPS))
def test_import_keeps_validation(setup):
    code = PROBE.format(setup=textwrap.dedent(SETUPS[setup]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_zuko_itself_still_works_without_validation():
    """zuko's own distributions keep the settings zuko chose for them."""
    code = textwrap.dedent(
        """
        import torch, pyro_dgm, zuko
        flow = zuko.flows.NSF(2, transforms=1)
        d = flow()
        assert type(d)._validate_args is False
        print(float(d.log_prob(torch.zeros(2))), d.sample((3,)).shape)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "torch.Size([3, 2])" in result.stdout
    assert "arg_constraints" not in result.stderr  # no torch warning about them


PROBE_VALUES = textwrap.dedent(
    """
    import re
    import torch, pyro
    import pyro.distributions as dist
    import pyro_dgm, zuko
    from pyro.infer import Trace_ELBO
    from pyro_dgm.distributions import (
        Discretized, DiscretizedLogistic, DiscretizedLogisticMixture, PixelCNN, WaveNet,
    )
    from pyro_dgm.flows import (
        IAF, MAF, NICE, Glow, MultiScaleGlow, MultiScaleRealNVP, RealNVP, SplineFlow, ZukoFlow,
    )
    from pyro_dgm.models import AutoregressiveModel

    def message(fn):
        try:
            fn()
        except ValueError as error:
            return str(error)
        except Exception as error:
            raise AssertionError(f"{type(error).__name__} instead of ValueError: {error}")
        raise AssertionError("no error")

    pixelcnn = PixelCNN((1, 2, 2), 5, hidden_channels=4, num_layers=1)
    wavenet = WaveNet(4, 5, residual_channels=4, num_layers=1)
    pair = AutoregressiveModel(pixelcnn)
    discrete = {
        "PixelCNN": lambda v: pixelcnn().log_prob(torch.full((1, 1, 2, 2), v)),
        "WaveNet": lambda v: wavenet().log_prob(torch.full((1, 1, 4), v)),
        "AutoregressiveModel": lambda v: Trace_ELBO().loss(
            pair.model, pair.guide, torch.full((1, 1, 2, 2), v)),
        "DiscretizedLogistic": lambda v: DiscretizedLogistic(2.0, 1.0, 5).log_prob(
            torch.tensor(v)),
        "DiscretizedLogisticMixture": lambda v: DiscretizedLogisticMixture(
            torch.zeros(2), torch.tensor([1.0, 3.0]), torch.ones(2), 5).log_prob(torch.tensor(v)),
        "Discretized": lambda v: Discretized(dist.Normal(2.0, 1.0), 5).log_prob(torch.tensor(v)),
    }
    for name, score in discrete.items():
        for bad in (5.0, -1.0, 1.5, float("nan")):
            text = message(lambda: score(bad))
            assert "integers in {0, ..., 4}" in text, (name, bad, text)
    flows = {
        "MAF": (lambda: MAF(3, 1, [8]), (3,)),
        "IAF": (lambda: IAF(3, 1, [8]), (3,)),
        "SplineFlow": (lambda: SplineFlow(3, 1, [8]), (3,)),
        "RealNVP": (lambda: RealNVP(3, 2, [8]), (3,)),
        "NICE": (lambda: NICE(3, 2, [8]), (3,)),
        "Glow": (lambda: Glow(3, 1, [8]), (3,)),
        "ZukoFlow": (lambda: ZukoFlow(zuko.flows.MAF(3, transforms=1)), (3,)),
        "MultiScaleGlow": (lambda: MultiScaleGlow((1, 4, 4), 1, 1, 4), (1, 4, 4)),
        "MultiScaleRealNVP": (lambda: MultiScaleRealNVP((1, 4, 4), 1, 1, 4), (1, 4, 4)),
    }
    for name, (make, shape) in flows.items():
        wrong = (4, *shape[:-1], shape[-1] - 1)
        text = message(lambda: make()().log_prob(torch.zeros(wrong)))
        assert f"expected shape batch + {shape}" in text and f"got {wrong}" in text, (name, text)
    print("ok")
    """
)


def test_bad_values_raise_in_a_fresh_interpreter():
    """What a user gets after ``import pyro_dgm``, with Pyro's default validation: values
    outside {0..L-1}, non-integers and NaN raise for every discrete distribution, and a
    value of the wrong event shape names the flow's event shape (one interpreter for all)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE_VALUES],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
