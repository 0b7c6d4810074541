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
