"""fit and the likelihood helpers refuse bad data clearly, stop a diverging run, and keep
the best epoch over a resumed history (issue 15)."""

from __future__ import annotations

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_dgm import datasets, infer
from pyro_dgm.flows import MAF, RealNVP, ZukoFlow
from pyro_dgm.infer.data import SPLIT_SEED, training_splits
from pyro_dgm.models import VAE, FlowModel
from pyro_dgm.utils.zuko_import import import_zuko

zuko = import_zuko()


def gaussian_model(x: torch.Tensor) -> None:
    loc = pyro.param("loc", torch.zeros(2))
    log_scale = pyro.param("log_scale", torch.zeros(2))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, log_scale.exp()).to_event(1), obs=x)


def empty_guide(x: torch.Tensor) -> None:
    pass


def latent_model(x: torch.Tensor) -> None:
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def latent_guide(x: torch.Tensor) -> None:
    loc = pyro.param("q_loc", torch.zeros(()))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc + 0.5 * x, 0.8))


# -- bad data ---------------------------------------------------------------------------


def test_fit_names_the_row_of_the_data_the_user_passed() -> None:
    data = torch.randn(100, 2)
    data[37, 1] = math.nan
    data[81, 0] = math.inf
    # the validation fraction shuffles the data: the rows named are still the user's
    with pytest.raises(ValueError, match=r"data: expected finite values, .* rows \[37, 81\]"):
        infer.fit(gaussian_model, empty_guide, data, validation=0.2, epochs=1, progress=False)


def test_fit_names_the_split_of_a_dataset() -> None:
    good = torch.randn(20, 2)
    bad = good.clone()
    bad[3, 0] = math.nan
    data = datasets.Dataset("toy", good, bad, good)
    with pytest.raises(ValueError, match=r"data.validation: .* rows \[3\]"):
        infer.fit(gaussian_model, empty_guide, data, epochs=1, progress=False)


@pytest.mark.parametrize(
    "helper", ["log_likelihood", "importance_log_likelihood", "evaluate_loss"]
)
@pytest.mark.parametrize("validation", [True, False])
def test_likelihood_helpers_refuse_nan_data(helper: str, validation: bool) -> None:
    x = torch.randn(6)
    x[2] = math.nan
    pyro.enable_validation(validation)  # the check is fit's own, not Pyro's
    kwargs = {"num_samples": 4} if helper == "importance_log_likelihood" else {}
    with pytest.raises(ValueError, match=r"data: expected finite values, .* rows \[2\] \(of 6\)"):
        getattr(infer, helper)(latent_model, latent_guide, x, **kwargs)


def test_a_dataset_with_an_empty_validation_split_is_refused() -> None:
    data = datasets.Dataset("toy", torch.randn(20, 2), torch.randn(0, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="data.validation: .*empty split.*validation=None"):
        infer.fit(gaussian_model, empty_guide, data, epochs=1, progress=False)
    history = infer.fit(gaussian_model, empty_guide, data, validation=None, epochs=1,
                        progress=False)  # fmt: skip
    assert history.epoch == [1]


def test_a_data_error_in_a_later_batch_is_raised_as_it_is() -> None:
    """Pyro's validation rejecting a data point is the data's fault, not divergence."""

    def model(x: torch.Tensor) -> None:
        logit = pyro.param("logit", torch.zeros(()))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Bernoulli(logits=logit), obs=x)

    x = torch.randint(0, 2, (200,)).float()
    x[150] = 2.0  # outside a Bernoulli's support, in a batch after the first
    with pytest.raises(ValueError, match="support"):
        infer.fit(model, empty_guide, x, validation=None, epochs=1, batch_size=50,
                  progress=False)  # fmt: skip


def test_fit_splits_the_data_with_its_seed() -> None:
    data = torch.arange(50.0)[:, None]
    _, by_default = training_splits(data, 0.2, None)
    _, seed_0 = training_splits(data, 0.2, SPLIT_SEED)
    _, seed_1 = training_splits(data, 0.2, 1)
    assert torch.equal(by_default, seed_0)  # the same split on every call without a seed
    assert not torch.equal(seed_0, seed_1)

    seen: list[torch.Tensor] = []

    def spy(x: torch.Tensor) -> None:
        if not torch.is_grad_enabled():  # fit's validation pass
            seen.append(x)
        loc = pyro.param("loc", torch.zeros(1))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    infer.fit(spy, empty_guide, data, validation=0.2, epochs=1, seed=1, progress=False)
    assert torch.equal(seen[-1].sort(0).values, seed_1.sort(0).values)


# -- divergence ---------------------------------------------------------------------------


FLOWS = {
    "maf": (lambda: MAF(2, num_layers=2, hidden_dims=[16, 16]), 10.0),
    "realnvp_no_clip": (lambda: RealNVP(2, num_layers=2, hidden_dims=[16, 16]), None),
    "zuko_nsf": (lambda: ZukoFlow(zuko.flows.NSF(2, transforms=2, hidden_features=[16])), 10.0),
}


@pytest.mark.parametrize("validation", [0.2, None], ids=["validation", "no_validation"])
@pytest.mark.parametrize("name", list(FLOWS))
def test_a_learning_rate_that_blows_up_stops_with_parameters_restored(name, validation) -> None:
    build, clip_norm = FLOWS[name]
    data = datasets.two_moons(600, seed=1)
    pair = FlowModel(build())
    with torch.no_grad():
        before = float(pair.flow().log_prob(data).mean())
    with pytest.raises(FloatingPointError) as caught:
        infer.fit(pair.model, pair.guide, data, validation=validation, epochs=3, lr=1e3,
                  batch_size=100, clip_norm=clip_norm, progress=False)  # fmt: skip
    message = str(caught.value)
    assert "epoch 1" in message and "restored to the initial values" in message
    with torch.no_grad():
        after = float(pair.flow().log_prob(data).mean())
    assert after == pytest.approx(before, abs=1e-5)  # the initial parameters are back


def test_divergence_after_good_epochs_restores_the_best_epoch(tmp_path) -> None:
    data = datasets.two_moons(600, seed=1)
    pair = FlowModel(ZukoFlow(zuko.flows.NSF(2, transforms=2, hidden_features=[16])))
    kwargs = {"batch_size": 100, "progress": False, "checkpoint": tmp_path / "c.pt"}
    history = infer.fit(pair.model, pair.guide, data, epochs=3, lr=1e-2, **kwargs)
    best = history.best_validation_loss
    with pytest.raises(infer.DivergenceError, match=f"restored to epoch {history.best_epoch}"):
        # the same run, resumed with a learning rate that wrecks it
        infer.fit(pair.model, pair.guide, data, epochs=3, lr=1e3, **kwargs)
    order = torch.randperm(600, generator=torch.Generator().manual_seed(SPLIT_SEED))
    valid = data[order[:60]]
    assert infer.evaluate_loss(pair.model, pair.guide, valid) == pytest.approx(best, rel=1e-5)


def test_divergence_margin_none_turns_the_check_off_and_bad_values_are_refused() -> None:
    data = datasets.two_moons(600, seed=1)
    pair = FlowModel(ZukoFlow(zuko.flows.NSF(2, transforms=2, hidden_features=[16])))
    history = infer.fit(pair.model, pair.guide, data, epochs=1, lr=1e3, batch_size=100,
                        divergence_margin=None, progress=False)  # fmt: skip
    assert history.epoch == [1]
    for bad in (0, -1.0, "wide"):
        with pytest.raises(ValueError, match="divergence_margin"):
            infer.fit(pair.model, pair.guide, data, epochs=1, divergence_margin=bad,
                      progress=False)  # fmt: skip


def test_overfitting_to_a_shifted_validation_set_is_not_divergence() -> None:
    train = torch.randn(500, 2) + 3.0
    valid = torch.randn(100, 2) - 3.0  # the better the fit to train, the worse on this
    history = infer.fit(gaussian_model, empty_guide, train, validation=valid, epochs=30,
                        lr=0.05, batch_size=100, patience=None, progress=False)  # fmt: skip
    assert len(history.epoch) == 30  # the training loss fell: not divergence
    assert history.validation_loss[-1] > min(history.validation_loss) + 2.0  # 1 nat per dim
    assert history.validation_loss[-1] > history.initial_validation_loss


# -- resumed runs -------------------------------------------------------------------------


def test_the_best_epoch_of_a_resumed_run_is_chosen_over_the_whole_history(tmp_path) -> None:
    train = torch.randn(300, 2) + 1.0
    valid = torch.randn(100, 2) + 1.0
    path = tmp_path / "checkpoint.pt"
    kwargs = {"validation": valid, "batch_size": 50, "progress": False, "checkpoint": path}
    first = infer.fit(gaussian_model, empty_guide, train, epochs=6, lr=0.05, **kwargs)
    best = first.best_validation_loss
    # resumed on other data, so that every new epoch is worse on the validation split
    second = infer.fit(gaussian_model, empty_guide, train + 5.0, epochs=3, lr=0.05,
                       patience=None, divergence_margin=None, **kwargs)  # fmt: skip
    assert second.epoch == list(range(1, 10))
    assert min(second.validation_loss[6:]) > best
    assert second.best_epoch == first.best_epoch
    loss = infer.evaluate_loss(gaussian_model, empty_guide, valid)
    assert loss == pytest.approx(best, rel=1e-5)  # the first call's best parameters are kept


def test_a_resumed_run_is_held_to_its_whole_history_for_divergence(tmp_path) -> None:
    train = torch.randn(300, 2) + 1.0
    valid = torch.randn(100, 2) + 1.0
    path = tmp_path / "checkpoint.pt"
    kwargs = {"validation": valid, "batch_size": 50, "progress": False, "checkpoint": path}
    first = infer.fit(gaussian_model, empty_guide, train, epochs=5, lr=0.05, **kwargs)
    assert math.isfinite(first.initial_train_loss)
    assert math.isfinite(first.initial_validation_loss)
    pyro.param("log_scale").data.fill_(-12.0)  # as if a bad step had landed in the checkpoint
    infer.save_checkpoint(path, history=first)
    with pytest.raises(infer.DivergenceError, match=f"epoch {first.best_epoch}"):
        infer.fit(gaussian_model, empty_guide, train, epochs=1, lr=1e-6, **kwargs)


# -- what the history says ----------------------------------------------------------------


def test_the_history_names_the_objective_and_why_the_run_ended() -> None:
    data = torch.randint(0, 17, (64, 1, 4, 4), dtype=torch.uint8)
    kwargs = {"latent_dim": 2, "num_levels": 17, "likelihood": "discretized_logistic"}
    plain = VAE.for_images((1, 4, 4), **kwargs)
    history = infer.fit(plain.model, plain.guide, data, epochs=2, batch_size=32, progress=False)
    assert history.objective == "negative ELBO (Trace_ELBO)"
    assert history.stop_reason == "epochs"

    pyro.clear_param_store()
    weighted = VAE.for_images((1, 4, 4), kl_weight=0.5, warmup_steps=10, **kwargs)
    history = infer.fit(weighted.model, weighted.guide, data, epochs=1, batch_size=32,
                        max_seconds=1e-9, progress=False)  # fmt: skip
    assert "weighted ELBO" in history.objective and "beta = 0.5" in history.objective
    assert "over 10 steps" in history.objective
    assert history.stop_reason == "max_seconds"


def test_an_interrupted_run_leaves_a_checkpoint_that_says_it_did_not_end(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    calls = []

    def stop_in_epoch_3(history: infer.History) -> None:
        calls.append(history.epoch[-1])
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        infer.fit(gaussian_model, empty_guide, torch.randn(100, 2), epochs=5, checkpoint=path,
                  progress=False, on_epoch_end=stop_in_epoch_3)  # fmt: skip
    saved = infer.load_checkpoint(path)
    assert saved.history.epoch == [1, 2] and saved.history.stop_reason == ""


# -- importance sampling ------------------------------------------------------------------


def test_too_few_importance_samples_say_the_tail_check_was_skipped() -> None:
    x = torch.randn(5)
    with pytest.warns(infer.TailCheckSkippedWarning, match="num_samples=10 is below 50"):
        result = infer.importance_log_likelihood(latent_model, latent_guide, x, num_samples=10)
    assert torch.isnan(result.pareto_k).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", infer.TailCheckSkippedWarning)
        infer.importance_log_likelihood(latent_model, latent_guide, x, num_samples=60)
        infer.importance_log_likelihood(
            latent_model, latent_guide, x, num_samples=10, pareto_k_threshold=None
        )


def test_a_resumed_run_takes_this_calls_learning_rate(tmp_path) -> None:
    """The optimizer's moments resume from the checkpoint; its learning rate does not."""
    made: list[torch.optim.Optimizer] = []

    def adam(params, lr):
        made.append(torch.optim.Adam(params, lr=lr))
        return made[-1]

    kwargs = {"epochs": 1, "progress": False, "checkpoint": tmp_path / "c.pt", "optimizer": adam}
    infer.fit(gaussian_model, empty_guide, torch.randn(100, 2), lr=0.05, **kwargs)
    infer.fit(gaussian_model, empty_guide, torch.randn(100, 2), lr=0.001, **kwargs)
    assert made[-1].param_groups[0]["lr"] == 0.001
    assert made[-1].state  # the moments were loaded


def test_the_estimators_name_the_data_plate_rule_for_a_plate_elsewhere() -> None:
    """Data of observations x groups x dims, the groups in a plate at dim -1 (Pyro's
    flow-guide tutorial): the per-point estimators split the first dimension, so they
    must say what they need instead of failing inside the model."""

    def model(x: torch.Tensor) -> None:
        with pyro.plate("groups", x.shape[1], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            with pyro.plate("obs", x.shape[0], dim=-2):
                pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x: torch.Tensor) -> None:
        loc = pyro.param("group_loc", torch.zeros(x.shape[1], 2))
        with pyro.plate("groups", x.shape[1], dim=-1):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    x = torch.randn(5, 4, 2)
    rule = r"site 'z' is not in a data plate of size 2 .*'groups' \(size 4, dim -1\).*outermost"
    for estimator in (infer.importance_log_likelihood, infer.log_likelihood):
        with pytest.raises(ValueError, match=rule):
            estimator(model, guide, x)

    def picky(x: torch.Tensor) -> None:  # a model that only takes the whole data set
        if len(x) != 5:
            raise RuntimeError(f"expected the 5 observations, got {len(x)}")
        model(x)

    with pytest.raises(ValueError, match=r"the pair failed on a batch of the first 2 .*outermost"):
        infer.importance_log_likelihood(picky, guide, x)


def test_the_report_says_whether_the_bound_has_converged_in_k() -> None:
    x = torch.randn(200) * math.sqrt(2.0)  # z ~ N(0, 1), x | z ~ N(z, 1): p(x) = N(0, 2)

    def narrow_guide(x: torch.Tensor) -> None:  # the posterior is N(x / 2, 1 / 2)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.5 * x, 0.1))

    good = infer.importance_log_likelihood(latent_model, latent_guide, x, num_samples=2000)
    state = good.convergence()
    assert state["num_samples"] == 2000 and state["converged"]
    assert abs(state["moved_nats"]) < 0.05
    assert "converged in K" in good.report() and "K=200 to K=2000" in good.report()

    with pytest.warns(infer.HeavyTailWarning, match="has NOT converged in K"):
        poor = infer.importance_log_likelihood(latent_model, narrow_guide, x, num_samples=200)
    state = poor.convergence()
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).mean().item()
    assert not state["converged"] and state["moved_nats"] > 0
    assert state["share_heavy_tailed"] > 0.5 and state["median_pareto_k"] > 0.7
    assert poor.summary().nats < exact  # a lower bound, still moving
    assert "not converged" in poor.report() and "use more samples" in poor.report()

    pair = FlowModel(MAF(2, num_layers=1))
    assert (
        "exact"
        in infer.importance_log_likelihood(
            pair.model, pair.guide, torch.randn(5, 2), num_samples=3
        ).report()
    )


# -- regularisation -----------------------------------------------------------------------


class _RecordingAdam(torch.optim.Adam):
    """Adam that keeps a copy of the parameters after every step."""

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.after: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        out = super().step(closure)
        self.after.append([p.detach().clone() for g in self.param_groups for p in g["params"]])
        return out


def test_ema_leaves_the_polyak_average_of_the_steps_in_place() -> None:
    made: list[_RecordingAdam] = []

    def adam(params, **kwargs):
        made.append(_RecordingAdam(params, **kwargs))
        return made[-1]

    x = torch.randn(120, 2) + 1.0
    infer.fit(gaussian_model, empty_guide, x, validation=None, epochs=3, batch_size=20,
              lr=0.05, optimizer=adam, ema=0.9, progress=False)  # fmt: skip
    steps = made[-1].after
    # recompute independently: start at the initial values, decay min(0.9, (1+t)/(10+t))
    start = [torch.zeros(2), torch.zeros(2)]  # gaussian_model's initial loc, log_scale
    names = sorted(["loc", "log_scale"])
    average = [s.clone() for s in start]
    for t, after in enumerate(steps, start=1):
        d = min(0.9, (1 + t) / (10 + t))
        average = [d * a + (1 - d) * p for a, p in zip(average, after, strict=True)]
    for name, value in zip(names, average, strict=True):
        torch.testing.assert_close(pyro.param(name).detach(), value, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(pyro.param("loc").detach(), steps[-1][0])  # not the last step


def test_ema_of_zero_decay_is_plain_training_and_resumes_from_its_average(tmp_path) -> None:
    x = torch.randn(120, 2) + 1.0
    kwargs = {"epochs": 2, "batch_size": 20, "lr": 0.05, "progress": False, "seed": 3}
    infer.fit(gaussian_model, empty_guide, x, **kwargs)
    plain = pyro.param("loc").detach().clone()
    pyro.clear_param_store()
    infer.fit(gaussian_model, empty_guide, x, ema=0.0, **kwargs)
    torch.testing.assert_close(pyro.param("loc").detach(), plain)

    pyro.clear_param_store()
    path = tmp_path / "c.pt"
    infer.fit(gaussian_model, empty_guide, x, ema=0.99, checkpoint=path, **kwargs)
    saved = infer.load_checkpoint(path)
    assert saved.averaged_params is not None and set(saved.averaged_params) == {"loc", "log_scale"}
    with pytest.raises(ValueError, match="ema"):
        infer.fit(gaussian_model, empty_guide, x, ema=1.0, **kwargs)


def test_the_pair_is_evaluated_in_eval_mode() -> None:
    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 2))
            self.modes: list[tuple[bool, bool]] = []

        def model(self, x: torch.Tensor) -> None:
            pyro.module("pair", self)
            self.modes.append((torch.is_grad_enabled(), self.training))
            with pyro.plate("data", len(x)):
                pyro.sample("x", dist.Normal(self.net(x), 1.0).to_event(1), obs=x)

        def guide(self, x: torch.Tensor) -> None:
            pass

    pair = Pair()
    infer.fit(pair.model, pair.guide, torch.randn(100, 2), epochs=2, progress=False)
    assert pair.training  # back in training mode afterwards
    steps = {training for grad, training in pair.modes if grad}
    evaluations = {training for grad, training in pair.modes[1:] if not grad}
    assert steps == {True} and evaluations == {False}


def test_weight_decay_reaches_the_optimizer() -> None:
    made: list[torch.optim.Optimizer] = []

    def adamw(params, **kwargs):
        made.append(torch.optim.AdamW(params, **kwargs))
        return made[-1]

    x = torch.randn(50, 2)
    infer.fit(gaussian_model, empty_guide, x, epochs=1, weight_decay=0.1, optimizer=adamw,
              progress=False)  # fmt: skip
    assert made[-1].defaults["weight_decay"] == 0.1
    with pytest.raises(ValueError, match="weight_decay: the optimizer 'plain' does not take it"):

        def plain(params, lr):
            return torch.optim.SGD(params, lr=lr)

        infer.fit(gaussian_model, empty_guide, x, epochs=1, weight_decay=0.1, optimizer=plain,
                  progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="weight_decay"):
        infer.fit(gaussian_model, empty_guide, x, epochs=1, weight_decay=-1.0, progress=False)
