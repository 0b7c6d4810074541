"""fit, checkpoints and likelihood metrics."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import (
    JitTrace_ELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)
from pyro.nn import PyroModule, PyroParam, pyro_method

from pyro_dgm import infer
from pyro_dgm.flows import MAF
from pyro_dgm.infer.objective import Objective, build_optimizer
from pyro_dgm.models import FlowModel
from pyro_dgm.utils.registration import (
    CollectedParams,
    answered_by_param_store,
    register_module,
)


def gaussian_model(x: torch.Tensor) -> None:
    loc = pyro.param("loc", torch.zeros(2))
    log_scale = pyro.param("log_scale", torch.zeros(2))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, log_scale.exp()).to_event(1), obs=x)


def empty_guide(x: torch.Tensor) -> None:
    pass


def test_fit_maximises_likelihood_of_a_gaussian() -> None:
    data = torch.randn(2000, 2) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -3.0])
    history = infer.fit(
        gaussian_model,
        empty_guide,
        data,
        validation=None,
        epochs=60,
        lr=0.05,
        batch_size=200,
        progress=False,
    )
    assert torch.allclose(pyro.param("loc"), data.mean(0), atol=0.08)
    assert torch.allclose(pyro.param("log_scale").exp(), data.std(0), rtol=0.05)
    assert history.train_loss[-1] < history.train_loss[0]
    assert len(history.epoch) == len(history.validation_loss) == len(history.seconds)
    assert all(b >= a for a, b in zip(history.seconds, history.seconds[1:], strict=False))


def test_fit_keeps_the_best_validation_epoch() -> None:
    data = torch.randn(400, 2)
    history = infer.fit(
        gaussian_model, empty_guide, data, epochs=15, lr=0.1, batch_size=50, progress=False
    )
    best = min(history.validation_loss)
    assert history.best_validation_loss == best
    # the parameters kept are those of the best epoch: re-evaluating gives its loss
    order = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    valid = data[order[:40]]
    assert math.isclose(
        infer.evaluate_loss(gaussian_model, empty_guide, valid), best, rel_tol=1e-5
    )


def test_early_stopping_on_held_out_loss() -> None:
    train = torch.randn(500, 2) + 3.0
    valid = torch.randn(100, 2) - 3.0  # the better the fit to train, the worse on this
    history = infer.fit(
        gaussian_model,
        empty_guide,
        train,
        validation=valid,
        epochs=200,
        lr=0.05,
        batch_size=100,
        patience=3,
        progress=False,
    )
    assert history.stopped_early
    assert len(history.epoch) == history.best_epoch + 3 < 200


def test_non_finite_loss_raises_and_restores_last_good_parameters() -> None:
    def model(x: torch.Tensor) -> None:
        loc = pyro.param("loc", torch.zeros(()))
        if loc.item() > 1.0:
            pyro.factor("blow_up", torch.tensor(float("nan")))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    data = torch.full((100,), 5.0)
    # Pyro's own validation would stop a NaN factor first, with a ValueError
    with pyro.validation_enabled(False), pytest.raises(infer.NonFiniteLossError, match="restored"):
        infer.fit(model, empty_guide, data, epochs=100, lr=0.05, batch_size=10, progress=False)
    assert math.isfinite(pyro.param("loc").item()) and pyro.param("loc").item() <= 1.0


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([[0.0, float("nan")]] * 10), "NaN"),
        ([[1.0, 2.0]], "data: expected a Tensor, a tuple or dict of tensors, a Dataset"),
        (torch.zeros(0, 2), "at least one"),
    ],
)
def test_fit_rejects_bad_data(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        infer.fit(gaussian_model, empty_guide, bad, validation=None, epochs=1, progress=False)


def test_fit_rejects_a_pair_without_parameters() -> None:
    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(ValueError, match="no parameters"):
        infer.fit(model, empty_guide, torch.randn(10), epochs=1, progress=False)


def test_fit_accepts_elbos_without_differentiable_loss() -> None:
    def model(x: torch.Tensor) -> None:
        loc = pyro.param("prior_loc", torch.zeros(()))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(loc, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x: torch.Tensor) -> None:
        w = pyro.param("w", torch.zeros(()))
        b = pyro.param("b", torch.zeros(()))
        with pyro.plate("data", x.shape[0]):
            # the exact posterior N((loc + x) / 2, 1/2) is in this family
            pyro.sample("z", dist.Normal(w * x + b, 0.5**0.5))

    data = torch.randn(300) * 1.5 + 2.0
    history = infer.fit(
        model,
        guide,
        data,
        loss=TraceGraph_ELBO(),
        validation=None,
        epochs=60,
        batch_size=30,
        lr=0.05,
        progress=False,
    )
    assert history.train_loss[-1] < history.train_loss[0]
    assert abs(pyro.param("prior_loc").item() - data.mean().item()) < 0.3


def test_data_size_keyword_scales_the_minibatch_elbo() -> None:
    def scaled_model(x: torch.Tensor, data_size: int | None = None) -> None:
        loc = pyro.param("loc", torch.zeros(()))
        n = data_size or x.shape[0]
        with pyro.plate("data", n, subsample=torch.arange(x.shape[0])):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    data = torch.randn(1000) + 0.5
    history = infer.fit(
        scaled_model, empty_guide, data, validation=None, epochs=20, lr=0.05, progress=False
    )
    # per-point loss of a unit Normal fit: 0.5 log(2 pi) + 0.5 E[(x - loc)^2] ~= 1.42
    assert abs(history.train_loss[-1] - (0.5 * math.log(2 * math.pi) + 0.5)) < 0.1


def test_checkpoint_resume_continues_the_history(tmp_path) -> None:
    data = torch.randn(300, 2) + 1.0
    path = tmp_path / "run" / "checkpoint.pt"
    first = infer.fit(
        gaussian_model, empty_guide, data, epochs=3, lr=0.05, checkpoint=path, progress=False
    )
    assert first.epoch == [1, 2, 3] and path.exists()
    saved_loc = pyro.param("loc").detach().clone()
    pyro.clear_param_store()
    second = infer.fit(
        gaussian_model, empty_guide, data, epochs=2, lr=0.05, checkpoint=path, progress=False
    )
    assert second.epoch == [1, 2, 3, 4, 5]
    assert second.train_loss[:3] == first.train_loss
    assert not torch.equal(pyro.param("loc"), saved_loc)  # it trained on from there
    state = torch.load(path, weights_only=True)
    assert state["history"]["epoch"] == [1, 2, 3, 4, 5]


def test_load_checkpoint_errors(tmp_path) -> None:
    path = tmp_path / "c.pt"
    gaussian_model(torch.zeros(1, 2))
    infer.save_checkpoint(path)
    with pytest.raises(ValueError, match="missing"):
        infer.load_checkpoint(path, params={"other": torch.zeros(2)})
    with pytest.raises(ValueError, match="shape"):
        infer.load_checkpoint(path, params={"loc": torch.zeros(3), "log_scale": torch.zeros(2)})
    torch.save({"not": "ours"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a pyro_dgm checkpoint"):
        infer.load_checkpoint(tmp_path / "other.pt")


def test_log_likelihood_is_exact_for_a_flow() -> None:
    pair = FlowModel(MAF(2, num_layers=2))
    x = torch.randn(50, 2)
    ll = infer.log_likelihood(pair.model, pair.guide, x, batch_size=16)
    expected = pair.flow().log_prob(x).double()
    assert ll.bound == "exact" and ll.num_points == 50 and ll.num_dims == 2
    assert math.isclose(ll.nats, expected.mean().item(), rel_tol=1e-5)
    assert math.isclose(ll.stderr, (expected.std() / math.sqrt(50)).item(), rel_tol=1e-4)
    assert math.isclose(ll.bits_per_dim, -ll.nats / (2 * math.log(2)))


def test_log_likelihood_elbo_is_below_the_exact_marginal() -> None:
    # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2); a deliberately poor guide q(z|x) = N(0, 1)
    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))

    x = torch.randn(400) * math.sqrt(2.0)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).mean().item()
    ll = infer.log_likelihood(model, guide, x, num_particles=20)
    assert ll.bound == "ELBO(particles=20)"
    # for this guide the ELBO is E_z[log N(x; z, 1)] = log N(x; 0, 1) - 1/2 exactly
    analytic = (dist.Normal(0.0, 1.0).log_prob(x) - 0.5).mean().item()
    assert abs(ll.nats - analytic) < 0.03
    assert ll.nats < exact


def test_bits_per_dim_conversion() -> None:
    assert math.isclose(infer.bits_per_dim(math.log(17) * 64, 64), math.log2(17))
    with pytest.raises(ValueError, match="num_dims"):
        infer.bits_per_dim(1.0, 0)


def _linear_gaussian_pair():
    """z ~ N(0, 1), x | z ~ N(z, 1), so p(x) = N(0, 2); guide q(z | x) = N(0.3 x, 0.9)."""

    def model(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x: torch.Tensor) -> None:
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.3 * x, 0.9))

    return model, guide


def test_importance_bound_rises_towards_the_exact_marginal() -> None:
    model, guide = _linear_gaussian_pair()
    x = torch.randn(300) * math.sqrt(2.0)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).double()
    gaps = []
    for k in (1, 10, 1000):
        est = infer.importance_log_likelihood(model, guide, x, num_samples=k, chunk_size=256)
        assert est.bound == f"IWAE(K={k})" and est.log_weights.shape == (k, 300)
        gaps.append((exact - est.values).mean().item())
    # a bound, tightening with K (K = 10 and K = 1000 are within 0.01 nats: sampling noise)
    assert gaps[0] > gaps[1] + 0.05 and gaps[1] > gaps[2] - 0.01
    assert abs(gaps[2]) < 0.01
    # K = 1 is the ELBO, in closed form for this pair: q = N(0.3 x, 0.81)
    x64, v = x.double(), 0.81
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    elbo = (
        -half_log_2pi
        - 0.5 * ((0.7 * x64) ** 2 + v)  # E_q log N(x; z, 1)
        - half_log_2pi
        - 0.5 * ((0.3 * x64) ** 2 + v)  # E_q log N(z; 0, 1)
        + 0.5 * math.log(2 * math.pi * math.e * v)  # entropy of q
    )
    one = infer.importance_log_likelihood(model, guide, x, num_samples=1).values
    stderr = (one - elbo).std().item() / math.sqrt(300)
    assert abs((one - elbo).mean().item()) < 4 * stderr


def test_importance_estimate_is_per_point_and_exact_without_latents() -> None:
    pair = FlowModel(MAF(2, num_layers=2))
    x = torch.randn(7, 2)
    est = infer.importance_log_likelihood(pair.model, pair.guide, x, num_samples=3)
    assert est.bound == "exact"
    assert torch.allclose(est.values.float(), pair.flow().log_prob(x), atol=1e-5)
    assert torch.allclose(est.effective_sample_size, torch.full((7,), 3.0, dtype=torch.float64))
    summary = est.summary()
    assert summary.num_points == 7 and math.isclose(summary.nats, est.values.mean().item())


def test_importance_estimate_requires_a_data_plate() -> None:
    def model(x: torch.Tensor) -> None:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x: torch.Tensor) -> None:
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="site 'z'"):
        infer.importance_log_likelihood(model, guide, torch.randn(5), num_samples=4)


class _ValidationSpy:
    """A one-parameter Gaussian model that records whether Pyro's validation is on."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def model(self, x: torch.Tensor) -> None:
        from pyro.infer.util import is_validation_enabled

        self.seen.append(is_validation_enabled())
        loc = pyro.param("spy_loc", torch.zeros(()))
        with pyro.plate("data", len(x)):
            pyro.sample("x", pyro.distributions.Normal(loc, 1.0), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pass


@pytest.mark.parametrize(
    ("validate", "later"), [("first_epoch", False), (True, True), (False, False)]
)
def test_fit_validates_the_first_epoch_then_follows_validate(validate, later) -> None:
    spy = _ValidationSpy()
    x = torch.randn(40)
    assert pyro.infer.util.is_validation_enabled()  # conftest turns it on
    infer.fit(
        spy.model,
        spy.guide,
        x,
        validation=None,
        epochs=3,
        batch_size=20,
        progress=False,
        validate=validate,
    )
    # the parameter discovery run, the initial parameters' loss, then 2 steps per epoch
    first, rest = spy.seen[1:4], spy.seen[4:]
    assert first == [validate is not False] * 3
    assert rest == [later] * 4
    assert pyro.infer.util.is_validation_enabled()  # Pyro's setting restored


def test_fit_restores_validation_after_an_error_and_rejects_bad_values() -> None:
    calls = []

    def model(x):
        calls.append(pyro.infer.util.is_validation_enabled())
        loc = pyro.param("loc2", torch.zeros(()))
        with pyro.plate("data", len(x)):
            pyro.sample("x", pyro.distributions.Normal(loc, 1.0), obs=x)
        if len(calls) == 3:  # inside training, with validation turned off
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        infer.fit(
            model,
            lambda x: None,
            torch.randn(10),
            validation=None,
            epochs=2,
            batch_size=5,
            progress=False,
            validate=False,
        )
    assert calls == [True, False, False]
    assert pyro.infer.util.is_validation_enabled()
    with pytest.raises(ValueError, match="validate must be"):
        infer.fit(model, lambda x: None, torch.randn(10), validate="always")


# ---------------------------------------------------------------------------
# fit answers the pair's pyro.param calls for the parameters it collected
# ---------------------------------------------------------------------------


class _MixedPair(PyroModule):
    """A VAE-like pair that registers parameters in every way Pyro allows: a
    torch module through pyro.module, a constrained pyro.param, a PyroModule's
    PyroParam (constrained) and its plain nn.Parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = PyroModule[torch.nn.Linear](2, 3)
        self.prior_scale = PyroParam(torch.ones(2), constraint=constraints.positive)
        self.encoder = torch.nn.Linear(3, 4)

    @pyro_method
    def model(self, x: torch.Tensor) -> None:
        noise = pyro.param("noise", torch.full((3,), 0.5), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, self.prior_scale).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), noise).to_event(1), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor) -> None:
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO, TraceEnum_ELBO])
def test_fit_step_equals_pyros_differentiable_loss(elbo: type) -> None:
    """The step loss and every gradient are Pyro's own, while the collected
    unconstrained parameters are no longer traced and the constrained ones are."""
    pair = _MixedPair()
    x = torch.randn(16, 3)
    objective = Objective(pair.model, pair.guide, elbo(max_plate_nesting=1), data_size=16)
    named = objective.params(x)
    assert {"decoder.weight", "decoder.bias", "encoder$$$weight", "noise"} <= set(named)

    pyro.set_rng_seed(3)
    value = objective.step_loss(x)
    ours = {n: p.grad.clone() for n, p in named.items()}
    for p in named.values():
        p.grad = None
    pyro.set_rng_seed(3)
    # max_plate_nesting given: no guessing run, which would draw random numbers first
    expected = elbo(max_plate_nesting=1).differentiable_loss(pair.model, pair.guide, x)
    expected.backward()
    assert torch.allclose(value, expected.detach(), rtol=0, atol=1e-6)
    for n, p in named.items():
        assert torch.allclose(ours[n], p.grad, rtol=0, atol=1e-6), n

    traced = set()
    for half in (objective.step_model, objective.step_guide):
        tape = poutine.trace(half).get_trace(x)
        traced |= {n for n, s in tape.nodes.items() if s["type"] == "param"}
    assert traced == {"noise", "prior_scale"}  # constrained: computed from the store


def test_fit_does_not_answer_params_for_jit_elbos() -> None:
    """A Jit ELBO finds the tensors it compiles against by tracing param sites."""
    pair = _MixedPair()
    objective = Objective(pair.model, pair.guide, JitTrace_ELBO(), data_size=8)
    objective.params(torch.randn(8, 3))
    assert objective.step_model is objective.model and objective.step_guide is objective.guide


def test_fit_trains_a_pair_registered_every_way() -> None:
    pair = _MixedPair()
    data = torch.randn(256, 3) * 0.3 + torch.tensor([1.0, -1.0, 0.5])
    before = {n: p.detach().clone() for n, p in pair.named_parameters()}
    history = infer.fit(
        pair.model,
        pair.guide,
        data,
        validation=None,
        epochs=30,
        batch_size=64,
        lr=0.05,
        progress=False,
    )
    assert history.train_loss[-1] < history.train_loss[0] - 1.0
    for n, p in pair.named_parameters():  # the PyroModule's and the module's tensors moved
        assert not torch.equal(p.detach(), before[n]), n
    assert pyro.param("noise").min() > 0


def test_fit_builds_torch_optimizers_with_multi_tensor_kernels() -> None:
    params = [torch.zeros(3, requires_grad=True)]
    assert build_optimizer(torch.optim.Adam, params, 0.1).defaults["foreach"] is True
    assert build_optimizer(torch.optim.SGD, params, 0.1).defaults["foreach"] is True

    def factory(p: list, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(p, lr=lr, foreach=False)

    assert build_optimizer(factory, params, 0.1).defaults["foreach"] is False


def test_fit_with_multi_tensor_kernels_takes_the_same_steps() -> None:
    data = torch.randn(512, 2)
    final = []
    for optimizer in (torch.optim.Adam, lambda p, lr: torch.optim.Adam(p, lr=lr, foreach=False)):
        pyro.clear_param_store()
        pyro.set_rng_seed(1)
        pair = FlowModel(MAF(2, num_layers=2, hidden_dims=[8]))
        initial = torch.cat([p.detach().flatten() for p in pair.parameters()])
        infer.fit(
            pair.model,
            pair.guide,
            data,
            validation=None,
            epochs=3,
            batch_size=64,
            optimizer=optimizer,
            progress=False,
        )
        final.append(torch.cat([p.detach().flatten() for p in pair.parameters()]))
    assert torch.allclose(final[0], final[1], rtol=0, atol=1e-5)
    assert (final[0] - initial).abs().max() > 1e-2  # both trained the same initial flow


@pytest.fixture
def module_calls(monkeypatch) -> list[str]:
    """The names ``pyro.module`` is called with from now on (it still runs)."""
    calls: list[str] = []
    real_module = pyro.module

    def counting_module(name: str, module: torch.nn.Module, *args, **kwargs):
        calls.append(name)
        return real_module(name, module, *args, **kwargs)

    monkeypatch.setattr(pyro, "module", counting_module)
    return calls


def test_pairs_skip_pyro_module_only_inside_fits_handler(module_calls) -> None:
    calls = module_calls
    pair = FlowModel(MAF(2, num_layers=2, hidden_dims=[8]))
    x = torch.randn(16, 2)
    objective = Objective(pair.model, pair.guide, Trace_ELBO(), data_size=16)
    named = objective.params(x)  # all unconstrained
    calls.clear()
    objective.step_loss(x)
    assert calls == []  # fit's handler holds every tensor of the flow

    Trace_ELBO().differentiable_loss(pair.model, pair.guide, x)  # outside fit: Pyro's way
    assert calls == ["flow"]

    calls.clear()
    # a handler inside fit's: it must see the params
    with CollectedParams(named), poutine.trace() as tape:
        register_module("flow", pair.flow)
    assert calls == ["flow"] and any(s["type"] == "param" for s in tape.trace.nodes.values())

    calls.clear()
    with CollectedParams({}):  # holds none of the flow's tensors
        register_module("flow", pair.flow)
    assert calls == ["flow"]


def test_scoring_answers_params_from_the_store_and_skips_pyro_module(module_calls) -> None:
    calls = module_calls
    pair = FlowModel(MAF(2, num_layers=2, hidden_dims=[8]))
    x = torch.randn(16, 2)
    pair.model(x)  # registers the flow's tensors in the store
    calls.clear()
    before = infer.importance_log_likelihood(pair.model, pair.guide, x, num_samples=1)
    assert calls == []  # every scoring pass found the flow's tensors answered
    exact = pair.flow().log_prob(x).double()
    torch.testing.assert_close(before.values, exact)

    # a constrained parameter is answered by its constrained value, not the raw tensor
    pyro.param("answered_scale", torch.tensor(2.0), constraint=constraints.positive)
    value = answered_by_param_store(lambda: pyro.param("answered_scale"))()
    assert float(value) == pytest.approx(2.0)
