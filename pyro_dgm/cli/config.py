r"""The settings of a ``pyro-dgm fit`` run: one frozen dataclass, written to the run's
folder as ``config.json`` and read back by ``pyro-dgm fit --resume`` and
``pyro-dgm evaluate``.

A setting that only some kinds of model use is ``None`` until
:func:`~pyro_dgm.cli.build.resolve_config` fills it in for the data and model at
hand (the likelihood a VAE actually uses, the couplings per stage of an image
flow, ...) or leaves it ``None`` where the model does not use it; the resolved
config is what a run folder records.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .. import datasets, models
from ..distributions import OUTPUTS
from ..utils.checks import check_choice, check_int, check_number
from .devices import check_device_name

__all__ = [
    "CONFIG_FORMAT",
    "DATA_NAMES",
    "FLOW_MODELS",
    "IMAGE_FLOW_MODELS",
    "MODEL_NAMES",
    "RunConfig",
]

CONFIG_FORMAT = "pyro_dgm.run_config/6"
#: The settings a config of an earlier format lacks, with the value its runs had
#: (``memory_saving`` ``None``: resolved to ordinary backpropagation for image flows;
#: ``output``: see :func:`_added_output`).
_ADDED_IN_3 = {"memory_saving": None, "dropout": None, "weight_decay": 0.0, "ema": None}
_ADDED_SETTINGS = {
    "pyro_dgm.run_config/1": {"conditional": False, "device": "cpu", **_ADDED_IN_3},
    "pyro_dgm.run_config/2": _ADDED_IN_3,
    "pyro_dgm.run_config/3": {},
    "pyro_dgm.run_config/4": {},
    "pyro_dgm.run_config/5": {},
}
#: The output every autoregressive run had before ``output`` was a setting.
_OUTPUT_BEFORE_4 = "logistic_mixture"

#: The vector flows of ``--model`` (their builders are in :mod:`pyro_dgm.cli.build`).
FLOW_MODELS = ("glow", "iaf", "maf", "nice", "realnvp", "spline", "zuko-maf", "zuko-nsf")
#: The names that build a multi-scale image flow on image data.
IMAGE_FLOW_MODELS = ("glow", "realnvp")
MODEL_NAMES = (*FLOW_MODELS, "vae", *models.AUTOREGRESSIVE_MODELS)
#: The data sets of ``--data`` (MNIST needs a path, so the command line leaves it out).
DATA_NAMES = tuple(name for name in datasets.DATASET_NAMES if name != "mnist")


def _optional(check: Any) -> Any:
    return lambda value, name: None if value is None else check(value, name)


def _string(choices: tuple[str, ...]) -> Any:
    def check(value: object, name: str) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a str, got {value!r}")
        return check_choice(value, name, choices)

    return check


def _int(minimum: int) -> Any:
    return lambda value, name: check_int(value, name, minimum)


def _positive_number(value: object, name: str) -> float:
    return check_number(value, name, positive=True)


def _decay(value: object, name: str) -> float:
    decay = check_number(value, name, minimum=0.0)
    if decay >= 1.0:
        raise ValueError(f"{name}: expected a decay in [0, 1), got {value!r}")
    return decay


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    return value


_CHECKS: dict[str, Any] = {
    "data": _string(DATA_NAMES),
    "model": _string(MODEL_NAMES),
    "epochs": _int(0),
    "batch_size": _optional(_int(1)),
    "lr": _optional(_positive_number),
    "patience": _optional(_int(1)),
    "weight_decay": _optional(lambda value, name: check_number(value, name, minimum=0.0)),
    "ema": _optional(_decay),
    "max_seconds": _optional(_positive_number),
    "seed": _int(0),
    "num_layers": _int(1),
    "hidden": _int(1),
    "levels": _optional(_int(1)),
    "steps_per_level": _optional(_int(1)),
    "checkerboard_steps": _optional(_int(0)),
    "memory_saving": _optional(_bool),
    "dropout": _optional(
        lambda value, name: check_number(value, name, minimum=0.0, maximum=0.999)
    ),
    "output": _optional(_string(OUTPUTS)),
    "dequantization": _optional(_string(tuple(sorted(models.DEQUANTIZATIONS)))),
    "num_samples": _optional(_int(1)),
    "prior": _optional(_string(models.PRIORS)),
    "posterior": _optional(_string(models.POSTERIORS)),
    "likelihood": _optional(_string(models.LIKELIHOODS)),
    "latent_dim": _optional(_int(1)),
    "prior_layers": _optional(_int(1)),
    "posterior_steps": _optional(_int(1)),
    "kl_weight": _optional(_positive_number),
    "warmup_steps": _optional(_int(0)),
    "conditional": _bool,
    "device": _optional(check_device_name),
}


@dataclass(frozen=True)
class RunConfig:
    r"""Every setting of a ``pyro-dgm fit`` run (the ``--flag`` of each is its name with
    dashes).

    Attributes:
        data: The embedded data set.
        model: A vector flow, ``"vae"``, or an autoregressive model of integer data.
        epochs: The maximum number of epochs of the whole run (resumes included).
        batch_size: Minibatch size (``None``: the model kind's, see
            :mod:`~pyro_dgm.cli.defaults`).
        lr: Adam's learning rate (``None``: the model kind's).
        patience: Epochs without validation improvement before early stopping
            (``None``: the model kind's).
        weight_decay: Decoupled weight decay (AdamW; 0: plain Adam); ``None``: the kind
            of model's default (:mod:`pyro_dgm.cli.defaults`).
        ema: The decay of an exponential moving average of the parameters, which is
            evaluated and saved instead of the last iterate (Polyak averaging; 0: off);
            ``None``: the kind of model's default.
        max_seconds: A training-time budget for the whole run, or ``None``.
        seed: Seeds Pyro and torch before the model is built.
        num_layers: The depth; what it counts depends on the model (see the help of
            ``--num-layers``), and the specific settings below default to it.
        hidden: Hidden units per layer (channels for images).
        levels: Levels of a multi-scale image flow.
        steps_per_level: Steps of flow per level (image Glow) or couplings per stage
            (image RealNVP).
        checkerboard_steps: Image Glow's checkerboard couplings at full resolution
            before its first squeeze (see :class:`~pyro_dgm.image_flows.Glow`).
        memory_saving: Train a multi-scale image flow with memory-saving
            backpropagation (:class:`~pyro_dgm.transforms.MemorySavingStack`: each
            level's steps rebuild their inputs from their outputs in the backward pass,
            so activation memory does not grow with depth).
        dropout: Dropout probability in a multi-scale image flow's coupling networks or
            in the gated layers of an autoregressive model (training only).
        output: The conditionals of an autoregressive model (``"logistic_mixture"`` or
            ``"categorical"``, see :class:`~pyro_dgm.distributions.PixelCNN`).
        dequantization: ``"uniform"`` or ``"variational"`` (flows on discrete data).
        num_samples: :math:`K` of the importance-weighted test bound (latent-variable
            pairs: VAEs, dequantized flows).
        prior: The VAE's prior.
        posterior: The VAE's posterior.
        likelihood: The VAE's likelihood.
        latent_dim: The VAE's latent dimension.
        prior_layers: Layers of the VAE's flow prior.
        posterior_steps: Steps of the VAE's flow posterior.
        kl_weight: The VAE's :math:`\beta` after warm-up (1: the ELBO).
        warmup_steps: Steps of the VAE's linear KL warm-up.
        conditional: Model the data given their class label (a one-hot context):
            :math:`p(x \mid c)`.
        device: Where the run trains and is evaluated (``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, ``"mps"``); ``None`` until the run starts, when it becomes
            ``"cuda"`` if CUDA is available, else ``"cpu"``.

    Raises:
        ValueError: For a setting of the wrong type or out of range, naming it.

    Example:
        >>> RunConfig(data="digits", model="pixelcnn", epochs=50).to_dict()["epochs"]
        50
        >>> RunConfig(lr=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: lr: expected a positive number, got -1.0
    """

    data: str = "moons"
    model: str = "spline"
    epochs: int = 200
    batch_size: int | None = None
    lr: float | None = None
    patience: int | None = None
    weight_decay: float | None = None
    ema: float | None = None
    max_seconds: float | None = None
    seed: int = 0
    num_layers: int = 4
    hidden: int = 64
    levels: int | None = None
    steps_per_level: int | None = None
    checkerboard_steps: int | None = None
    memory_saving: bool | None = None
    dropout: float | None = None
    output: str | None = None
    dequantization: str | None = None
    num_samples: int | None = None
    prior: str | None = None
    posterior: str | None = None
    likelihood: str | None = None
    latent_dim: int | None = None
    prior_layers: int | None = None
    posterior_steps: int | None = None
    kl_weight: float | None = None
    warmup_steps: int | None = None
    conditional: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = _CHECKS[field.name](getattr(self, field.name), field.name)
            object.__setattr__(self, field.name, value)  # canonical types (1 -> 1.0 for lr)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict, with the format tag first."""
        return {"format": CONFIG_FORMAT, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        """The settings as a JSON object (``config.json`` of a run folder)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, state: object, source: str = "config") -> RunConfig:
        """A config from :meth:`to_dict`'s output: every setting present, no other key
        (a config of an earlier format gets the settings added since, as its runs had them:
        unconditional, on the CPU).

        Raises:
            ValueError: For a config that is not a dict, has another format tag, lacks
                settings (partial), has unknown keys, or a mistyped value; the message
                names ``source`` and the keys.
        """
        if not isinstance(state, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(state).__name__}")
        added = _ADDED_SETTINGS.get(state.get("format"))
        if state.get("format") != CONFIG_FORMAT and added is None:
            raise ValueError(
                f"{source}: expected format {CONFIG_FORMAT!r}, got {state.get('format')!r}"
            )
        if added is not None:
            state = added | {"output": _added_output(state)} | state
            state = state | _trained_without_averaging(state)
            # a resolved config has levels exactly when the model was an image flow
            state = state | _added_in_6(state, image_flow=state.get("levels") is not None)
        names = [field.name for field in dataclasses.fields(cls)]
        missing = [name for name in names if name not in state]
        unknown = sorted(set(state) - {"format", *names})
        if missing or unknown:
            raise ValueError(
                f"{source}: expected every setting of a run and nothing else; "
                f"missing {missing}, unknown {unknown}"
            )
        try:
            return cls(**{name: state[name] for name in names})
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> RunConfig:
        """A config from :meth:`to_json`'s output (see :meth:`from_dict`)."""
        try:
            state = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error})") from error
        return cls.from_dict(state, source)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some settings changed (checked again)."""
        return dataclasses.replace(self, **changes)


def _added_output(state: dict[str, Any]) -> str | None:
    """The ``output`` of a run of a config format before 4: what its autoregressive model
    was built with (a run of another model has none)."""
    return _OUTPUT_BEFORE_4 if state.get("model") in models.AUTOREGRESSIVE_MODELS else None


def _added_in_6(state: dict[str, Any], image_flow: bool) -> dict[str, Any]:
    """What a run of a config format before 6 had of the settings format 6 added or whose
    ``None`` it redefined: an image Glow no ``checkerboard_steps``, and an image flow or an
    autoregressive model without a ``dropout`` no dropout (``None`` now means their
    default, 0.1). ``image_flow``: whether a glow or realnvp run was on images."""
    model, added = state.get("model"), {}
    if "checkerboard_steps" not in state:
        added["checkerboard_steps"] = 0 if model == "glow" and image_flow else None
    uses_dropout = (model in IMAGE_FLOW_MODELS and image_flow) or (
        model in models.AUTOREGRESSIVE_MODELS
    )
    if uses_dropout and state.get("dropout") is None:
        added["dropout"] = 0.0
    return added


def _trained_without_averaging(state: dict[str, Any]) -> dict[str, float]:
    """A run of a config format before 5 trained without weight decay and averaging
    unless its config says so (``None`` then meant off; since format 5 it means the
    kind of model's default, and 0 means off)."""
    return {name: 0.0 for name in ("weight_decay", "ema") if state.get(name) is None}


#: The keys of the namespace that ``pyro-dgm fit`` wrote as ``metrics.json["config"]``
#: before run folders had a ``config.json``: how to run, not what was run.
LEGACY_EXECUTION_KEYS = frozenset({"command", "out", "quiet", "threads"})


def from_legacy_namespace(state: object, source: str) -> RunConfig:
    """The config of a run written before ``config.json`` existed (its settings were
    the command line's namespace, in ``metrics.json["config"]``). Settings that the
    old tool passed to every model but the model did not use are resolved away by
    :func:`~pyro_dgm.cli.build.resolve_config` with ``drop_unused=True``."""
    if not isinstance(state, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(state).__name__}")
    names = {field.name for field in dataclasses.fields(RunConfig)}
    unknown = sorted(set(state) - names - LEGACY_EXECUTION_KEYS)
    missing = sorted({"data", "model"} - set(state))
    if missing or unknown:
        raise ValueError(
            f"{source}: not a config of pyro-dgm fit; missing {missing}, unknown {unknown}"
        )
    try:
        settings = {"output": _added_output(state)} | state
        settings = settings | _trained_without_averaging(settings)
        # taken as images: resolving with drop_unused drops them again for a vector flow
        settings = settings | _added_in_6(settings, image_flow=True)
        return RunConfig(**{k: v for k, v in settings.items() if k in names})
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error
