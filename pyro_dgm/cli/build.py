r"""From a :class:`~pyro_dgm.cli.config.RunConfig` and a data set to the model/guide pair.

:func:`resolve_config` fills in the settings that depend on the data and the kind of
model (and refuses the ones that kind does not use); :func:`build_pair` builds the
pair from the resolved settings. Neither changes the config it is given.

What ``--num-layers`` (``num_layers``) counts, per kind of model:

- vector flows ``maf``, ``iaf``, ``spline``, ``zuko-maf``, ``zuko-nsf``: layers;
  ``glow``: steps (ActNorm, invertible linear map, coupling);
  ``realnvp``, ``nice``: pairs of couplings (``2 * num_layers`` couplings, so that
  every coordinate is transformed ``num_layers`` times);
- multi-scale image flows (``glow``, ``realnvp`` on images): the default of
  ``steps_per_level``: Glow's steps per level, RealNVP's ``max(1, num_layers // 2)``
  couplings per stage (two stages per level, so about ``num_layers`` couplings per level);
- ``vae``: the default of ``prior_layers`` (a flow prior) and ``posterior_steps``
  (a flow posterior);
- ``pixelcnn``: gated blocks; ``wavenet``: dilated layers.

A ``conditional`` run models :math:`p(x \mid c)` with the one-hot class label as the
context :math:`c` (:func:`load_data` attaches it): the autoregressive models, the VAE
(not with the VampPrior) and the vector flows :data:`CONDITIONAL_FLOWS` on continuous
data (the toys' labels are their components). The flows on discrete data go through a
dequantization, whose density takes no context, so they refuse it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from .. import datasets, flows, image_flows, models
from ..utils.zuko_import import import_zuko
from .config import RunConfig
from .defaults import training_defaults

__all__ = [
    "AUTOREGRESSIVE_DROPOUT",
    "AUTOREGRESSIVE_OUTPUT",
    "CONDITIONAL_FLOWS",
    "FLOW_BUILDERS",
    "GLOW_CHECKERBOARD_STEPS",
    "IMAGE_FLOW_BUILDERS",
    "IMAGE_FLOW_DROPOUT",
    "architecture",
    "build_pair",
    "is_latent_variable_model",
    "load_data",
    "model_kind",
    "resolve_config",
    "run_name",
    "split_args",
]


def _zuko_flow(name: str, dim: int, settings: Any) -> flows.Flow:
    zuko = import_zuko()
    build = getattr(zuko.flows, name)
    return flows.ZukoFlow(
        build(dim, transforms=settings.num_layers, hidden_features=[settings.hidden] * 2)
    )


#: ``--model`` name to a vector flow ``(dim, settings) -> Flow`` (``settings`` has
#: ``num_layers`` and ``hidden``); those of :data:`CONDITIONAL_FLOWS` also take
#: ``context_dim`` (a conditional flow).
FLOW_BUILDERS: dict[str, Callable[..., flows.Flow]] = {
    "maf": lambda dim, a, context_dim=None: flows.MAF(
        dim, a.num_layers, [a.hidden] * 2, context_dim=context_dim
    ),
    "iaf": lambda dim, a, context_dim=None: flows.IAF(
        dim, a.num_layers, [a.hidden] * 2, context_dim=context_dim
    ),
    "spline": lambda dim, a: flows.SplineFlow(dim, a.num_layers, [a.hidden] * 2),
    "realnvp": lambda dim, a, context_dim=None: flows.RealNVP(
        dim, 2 * a.num_layers, [a.hidden] * 2, context_dim=context_dim
    ),
    "nice": lambda dim, a, context_dim=None: flows.NICE(
        dim, 2 * a.num_layers, [a.hidden] * 2, context_dim=context_dim
    ),
    "glow": lambda dim, a, context_dim=None: flows.Glow(
        dim, a.num_layers, [a.hidden] * 2, context_dim=context_dim
    ),
    "zuko-maf": lambda dim, a: _zuko_flow("MAF", dim, a),
    "zuko-nsf": lambda dim, a: _zuko_flow("NSF", dim, a),
}

#: The conditionals of ``--model pixelcnn`` and ``wavenet`` unless ``--output`` says
#: otherwise: a categorical over the levels, which gave both models a lower test NLL than
#: the logistic mixture on a 1,000-image subset of digits, 3 seeds
#: (``benchmarks/small_data.py``; results in ``benchmarks/README.md``).
AUTOREGRESSIVE_OUTPUT = "categorical"

#: The vector flows that take a context (``--conditional`` on continuous data).
CONDITIONAL_FLOWS = ("maf", "iaf", "realnvp", "nice", "glow")
#: What ``--conditional`` supports, for the message that refuses it elsewhere.
_CONDITIONAL_SUPPORT = (
    "pixelcnn and wavenet, vae (normal or flow prior), and the vector flows "
    f"{', '.join(CONDITIONAL_FLOWS)} on continuous data"
)


def load_data(config: RunConfig) -> datasets.Dataset:
    """The data set ``config.data`` names; for a conditional run, with its labels as a
    one-hot context (:meth:`~pyro_dgm.datasets.Dataset.with_label_context`; a toy's
    labels are its components).

    Raises:
        ValueError: For a conditional run on data without labels.

    Example:
        >>> from pyro_dgm.cli.config import RunConfig
        >>> load_data(RunConfig(data="digits", model="pixelcnn", conditional=True)).context_shape
        torch.Size([10])
    """
    name = datasets.ALIASES.get(config.data, config.data)
    if not config.conditional:
        return datasets.load(name)
    data = datasets.load(name, labels=True) if name in datasets.TOY_NAMES else datasets.load(name)
    if data.train_labels is None:
        raise ValueError(f"--conditional: --data {config.data} has no labels to condition on")
    return data.with_label_context()


def _image_steps(model: str, settings: Any) -> int:
    steps = getattr(settings, "steps_per_level", None)
    if steps is not None:
        return steps
    return settings.num_layers if model == "glow" else max(1, settings.num_layers // 2)


#: Image Glow's full-resolution checkerboard couplings before its first squeeze, unless
#: told otherwise: the paper's Glow (0) lost several nats to RealNVP on 8x8 digits,
#: two of them closed the gap (``benchmarks/README.md``, small_data).
GLOW_CHECKERBOARD_STEPS = 2
#: The image flows' dropout in their coupling networks unless told otherwise (0 with
#: memory-saving backpropagation, which refuses dropout): on the 1,000-image digits subset,
#: with weight decay and averaging, it lowered RealNVP's test NLL on 3 of 3 seeds and
#: Glow's on 2 of 3 (``benchmarks/README.md``, small_data).
IMAGE_FLOW_DROPOUT = 0.1
#: PixelCNN's and WaveNet's dropout on their gated layers' features unless told otherwise:
#: on the same subset, with the categorical output, it lowered both models' test NLL on 3
#: of 3 seeds (``benchmarks/README.md``, small_data).
AUTOREGRESSIVE_DROPOUT = 0.1

# On image data (C, H, W), these names build the multi-scale image flows instead of a
# vector flow on the flattened pixels.
IMAGE_FLOW_BUILDERS: dict[str, Callable[[tuple[int, ...], Any], flows.Flow]] = {
    "glow": lambda shape, a: image_flows.Glow(
        shape,
        a.levels,
        _image_steps("glow", a),
        hidden_channels=a.hidden,
        num_blocks=1,
        checkerboard_steps=getattr(a, "checkerboard_steps", None) or 0,
        memory_saving=bool(getattr(a, "memory_saving", False)),
        dropout=getattr(a, "dropout", None) or 0.0,
    ),
    "realnvp": lambda shape, a: image_flows.RealNVP(
        shape,
        a.levels,
        _image_steps("realnvp", a),
        hidden_channels=a.hidden,
        num_blocks=1,
        memory_saving=bool(getattr(a, "memory_saving", False)),
        dropout=getattr(a, "dropout", None) or 0.0,
    ),
}


def model_kind(model: str, data: datasets.Dataset) -> str:
    """``"autoregressive"``, ``"vae"``, ``"image_flow"`` (a multi-scale flow on images)
    or ``"flow"`` (a vector flow on the flattened data).

    Example:
        >>> model_kind("glow", datasets.digits()), model_kind("glow", datasets.load("moons"))
        ('image_flow', 'flow')
    """
    if model in models.AUTOREGRESSIVE_MODELS:
        return "autoregressive"
    if model == "vae":
        return "vae"
    if len(data.event_shape) == 3 and model in IMAGE_FLOW_BUILDERS:
        return "image_flow"
    return "flow"


def is_latent_variable_model(model: str, data: datasets.Dataset) -> bool:
    """Whether the pair has latent variables (a VAE, a flow on dequantized data), so
    that its likelihood is a bound (ELBO, importance-weighted) rather than exact.

    Example:
        >>> digits = datasets.digits()
        >>> is_latent_variable_model("vae", digits), is_latent_variable_model("pixelcnn", digits)
        (True, False)
    """
    kind = model_kind(model, data)
    return kind == "vae" or (kind in ("flow", "image_flow") and data.num_levels is not None)


def resolve_config(
    config: RunConfig, data: datasets.Dataset, *, drop_unused: bool = False
) -> RunConfig:
    """The config with every setting this model uses on this data filled in, and every
    setting it does not use ``None``. Resolving a resolved config changes nothing.

    Arguments:
        config: The settings as given.
        data: The data set ``config.data`` names.
        drop_unused: Set the settings the model does not use to ``None`` instead of
            refusing them (for configs of older versions, which recorded every flag).

    Raises:
        ValueError: For a setting the model does not use (unless ``drop_unused``), or
            one that does not fit the data (e.g. a Bernoulli likelihood of continuous
            data); the message names the flag.

    Example:
        >>> from pyro_dgm.cli.config import RunConfig
        >>> config = resolve_config(RunConfig(data="digits", model="vae"), datasets.digits())
        >>> config.prior, config.posterior, config.likelihood, config.latent_dim
        ('normal', 'gaussian', 'discretized_logistic', 16)
    """
    kind = model_kind(config.model, data)
    discrete = data.num_levels is not None
    where = f"--model {config.model} on --data {config.data}"
    changes: dict[str, Any] = {}

    def default(name: str, value: Any) -> Any:
        given = getattr(config, name)
        changes[name] = value if given is None else given
        return changes[name]

    def unused(name: str, reason: str) -> None:
        if getattr(config, name) is None:
            return
        if not drop_unused:
            raise ValueError(f"--{name.replace('_', '-')}: {reason}")
        changes[name] = None

    training = training_defaults(kind)
    default("lr", training.lr)
    default("batch_size", training.batch_size)
    default("patience", training.patience)
    default("weight_decay", training.weight_decay)
    default("ema", training.ema)

    if kind in ("flow", "image_flow"):
        if discrete:
            default("dequantization", "uniform")
        else:
            unused("dequantization", f"is for discrete data; --data {config.data} is continuous")
    elif kind == "vae":
        unused("dequantization", "is for flows; a VAE uses --likelihood instead")
    else:
        unused("dequantization", f"is for flows; {config.model} models the integers exactly")

    if config.conditional:
        refused = None
        if kind == "image_flow" or (kind == "flow" and discrete):
            refused = (
                f"--model {config.model} on discrete data is a dequantized flow, which takes "
                "no label context yet"
            )
        elif kind == "flow" and config.model not in CONDITIONAL_FLOWS:
            refused = f"--model {config.model} takes no context"
        elif kind == "vae" and config.prior == "vamp":
            refused = (
                "--prior vamp mixes the posterior at pseudo-inputs, which have no label; use "
                "--prior normal or flow"
            )
        if refused is not None:
            raise ValueError(
                f"--conditional: {refused}; conditional models: {_CONDITIONAL_SUPPORT}"
            )

    if kind == "image_flow":
        default("levels", 2)
        default("steps_per_level", _image_steps(config.model, config))
        saving = default("memory_saving", False)
        if default("dropout", 0.0 if saving else IMAGE_FLOW_DROPOUT) and saving:
            raise ValueError(
                "--dropout: expected 0 with --memory-saving (its backward pass recomputes each "
                f"step and would draw other dropout masks), got {changes['dropout']}"
            )
        if config.model == "glow":
            default("checkerboard_steps", GLOW_CHECKERBOARD_STEPS)
        else:
            unused(
                "checkerboard_steps",
                f"is a setting of --model glow on image data; {config.model}'s levels begin "
                "with checkerboard couplings already",
            )
    else:
        for name in ("levels", "steps_per_level", "checkerboard_steps", "memory_saving"):
            unused(
                name,
                "is a setting of the multi-scale image flows (--model glow or realnvp on "
                f"image data); {where} does not use it",
            )
        if kind == "autoregressive":
            default("dropout", AUTOREGRESSIVE_DROPOUT)
        else:
            unused(
                "dropout",
                "is a setting of the multi-scale image flows (--model glow or realnvp on "
                f"image data) and the autoregressive models (pixelcnn, wavenet); {where} "
                "does not use it",
            )

    if kind == "autoregressive":
        default("output", AUTOREGRESSIVE_OUTPUT)
    else:
        unused(
            "output",
            "is the conditional distribution of an autoregressive model (--model pixelcnn or "
            f"wavenet); {where} does not use it"
            + ("; a VAE uses --likelihood" if kind == "vae" else ""),
        )

    if is_latent_variable_model(config.model, data):
        default("num_samples", 1000)
    else:
        unused(
            "num_samples",
            "is the K of the importance-weighted bound of a latent-variable model; "
            f"{where} has an exact likelihood",
        )

    vae_settings = ("prior", "posterior", "likelihood", "latent_dim", "prior_layers")
    vae_settings += ("posterior_steps", "kl_weight", "warmup_steps")
    if kind == "vae":
        prior = default("prior", "normal")
        posterior = default("posterior", "gaussian")
        likelihood = default("likelihood", "discretized_logistic" if discrete else "gaussian")
        if likelihood != "gaussian" and not discrete:
            raise ValueError(
                f"--likelihood {likelihood} needs discrete data; {config.data} is not"
            )
        default("latent_dim", 16 if len(data.event_shape) == 3 else 2)
        if prior == "flow":
            default("prior_layers", config.num_layers)
        else:
            unused("prior_layers", f"counts the layers of a flow prior; --prior {prior} has none")
        if posterior != "gaussian":
            default("posterior_steps", config.num_layers)
        else:
            unused(
                "posterior_steps",
                "counts the steps of a flow posterior (iaf, planar, householder, sylvester); "
                "--posterior gaussian has none",
            )
        default("kl_weight", 1.0)
        default("warmup_steps", models.vae.VAMP_WARMUP_STEPS if prior == "vamp" else 0)
    else:
        for name in vae_settings:
            unused(name, f"is a VAE setting (--model vae); {where} does not use it")
    return dataclasses.replace(config, **changes)


def _binarized(data: datasets.Dataset) -> datasets.Dataset:
    """Discrete data thresholded at half its levels, as {0, 1} (binarized digits)."""
    cut = data.num_levels // 2
    return dataclasses.replace(
        data,
        name=f"{data.name}-binarized",
        train=(data.train >= cut).to(torch.uint8),
        validation=(data.validation >= cut).to(torch.uint8),
        test=(data.test >= cut).to(torch.uint8),
        num_levels=2,
    )


def build_pair(config: RunConfig, data: datasets.Dataset) -> tuple[datasets.Dataset, Any]:
    """The model/guide pair ``config`` describes, for ``data``, and the data it models
    (``data`` itself, or binarized for a VAE with a Bernoulli likelihood).

    The config is resolved first (:func:`resolve_config`) and is not changed. Random
    initial values (1x1 convolutions, pseudo-inputs) come from torch's generator: seed
    it first for the same pair.

    Example:
        >>> from pyro_dgm.cli.config import RunConfig
        >>> moons = datasets.load("moons")
        >>> data, pair = build_pair(RunConfig(data="moons", model="maf", num_layers=1, hidden=8), moons)
        >>> type(pair).__name__, data is moons
        ('FlowModel', True)
    """
    config = resolve_config(config, data)
    kind = model_kind(config.model, data)
    context = {} if not config.conditional else {"context_dim": _context_dim(data)}
    if kind == "autoregressive":
        return data, models.build_autoregressive(
            config.model,
            data,
            hidden=config.hidden,
            num_layers=config.num_layers,
            output=config.output,
            dropout=config.dropout or 0.0,
            **context,
        )
    if kind == "vae":
        return _build_vae(config, data)
    if kind == "image_flow":
        flow = IMAGE_FLOW_BUILDERS[config.model](tuple(data.event_shape), config)
    else:
        flow = FLOW_BUILDERS[config.model](math.prod(data.event_shape), config, **context)
    if data.num_levels is None:
        return data, models.FlowModel(flow)
    dequantize = models.DEQUANTIZATIONS[config.dequantization]
    return data, dequantize(flow, data.num_levels, event_shape=data.event_shape)


def split_args(
    data: datasets.Dataset, split: str, count: int | None = None
) -> tuple[torch.Tensor, ...]:
    """The arguments the pair takes for (the first ``count`` points of) a split:
    ``(x,)``, or ``(x, context)`` for data with a context.

    Example:
        >>> from pyro_dgm.cli.config import RunConfig
        >>> labelled = load_data(RunConfig(data="digits", model="pixelcnn", conditional=True))
        >>> [tuple(t.shape) for t in split_args(labelled, "test", 3)]  # (x, one-hot labels)
        [(3, 1, 8, 8), (3, 10)]
    """
    batch = data.split(split)
    args = batch if isinstance(batch, tuple) else (batch,)
    return args if count is None else tuple(a[:count] for a in args)


def _context_dim(data: datasets.Dataset) -> int:
    """The size of one example's context: a vector (the one-hot label of
    :func:`load_data`)."""
    shape = data.context_shape
    if shape is None or len(shape) != 1:
        raise ValueError(
            f"data: a conditional run needs one context vector per example (load_data "
            f"attaches the one-hot labels), got context shape {shape}"
        )
    return shape[0]


def _build_vae(config: RunConfig, data: datasets.Dataset) -> tuple[datasets.Dataset, Any]:
    if config.likelihood == "bernoulli":
        data = _binarized(data)
    options = {
        "prior": config.prior,
        "posterior": config.posterior,
        "likelihood": config.likelihood,
        "num_levels": None if config.likelihood in ("bernoulli", "gaussian") else data.num_levels,
        "prior_layers": config.prior_layers or config.num_layers,
        "posterior_steps": config.posterior_steps or config.num_layers,
        "flow_hidden_dims": [config.hidden] * 2,
        "kl_weight": config.kl_weight,
        "warmup_steps": config.warmup_steps,
        "condition_dim": _context_dim(data) if config.conditional else None,
    }
    if len(data.event_shape) == 3:
        vae = models.VAE.for_images(data.event_shape, latent_dim=config.latent_dim, **options)
    else:
        vae = models.VAE.for_vectors(
            math.prod(data.event_shape),
            latent_dim=config.latent_dim,
            hidden_dims=[config.hidden] * 2,
            **options,
        )
    if config.prior == "vamp":
        k = vae.prior.num_components
        vae.init_pseudo_inputs(data.train[torch.randperm(len(data.train))[:k]])
    return data, vae


def architecture(config: RunConfig, data: datasets.Dataset) -> dict[str, Any]:
    """What was built, in numbers: the kind of model and its depth as counted by the
    model itself (e.g. ``2 * num_layers`` couplings of a vector RealNVP).

    Example:
        >>> from pyro_dgm.cli.config import RunConfig
        >>> architecture(RunConfig(data="moons", model="realnvp", num_layers=3), datasets.load("moons"))
        {'kind': 'vector flow', 'num_transforms': 6, 'transforms_are': 'couplings', 'hidden_dims': [64, 64]}
    """
    config = resolve_config(config, data)
    described = _architecture(config, data)
    if config.conditional:
        described["context_dim"] = _context_dim(data)
        described["context_is"] = "one-hot class label"
    return described


def _architecture(config: RunConfig, data: datasets.Dataset) -> dict[str, Any]:
    kind = model_kind(config.model, data)
    if kind == "flow":
        pairs = config.model in ("realnvp", "nice")
        unit = {"realnvp": "couplings", "nice": "couplings", "glow": "steps"}
        return {
            "kind": "vector flow",
            "num_transforms": 2 * config.num_layers if pairs else config.num_layers,
            "transforms_are": unit.get(config.model, "layers"),
            "hidden_dims": [config.hidden] * 2,
        }
    if kind == "image_flow":
        return {
            "kind": "multi-scale image flow",
            "levels": config.levels,
            "steps_per_level_are": "steps" if config.model == "glow" else "couplings per stage",
            "steps_per_level": config.steps_per_level,
            "checkerboard_steps": config.checkerboard_steps,
            "hidden_channels": config.hidden,
            "memory_saving": config.memory_saving,
            "dropout": config.dropout,
        }
    if kind == "vae":
        return {
            "kind": "vae",
            "latent_dim": config.latent_dim,
            "prior": config.prior,
            "prior_layers": config.prior_layers,
            "posterior": config.posterior,
            "posterior_steps": config.posterior_steps,
            "likelihood": config.likelihood,
            "flow_hidden_dims": [config.hidden] * 2,
        }
    return {
        "kind": "autoregressive",
        "num_layers": config.num_layers,
        "layers_are": "gated blocks" if config.model == "pixelcnn" else "dilated layers",
        "hidden": config.hidden,
        "output": config.output,
        "dropout": config.dropout,
    }


def run_name(config: RunConfig, data: datasets.Dataset) -> str:
    """The default folder name of a run: ``DATA-MODEL`` with the VAE's prior and
    posterior or the dequantization, and ``-conditional`` for a conditional run.

    Example:
        >>> from pyro_dgm.cli.config import RunConfig
        >>> digits = datasets.digits()
        >>> run_name(resolve_config(RunConfig(data="digits", model="vae"), digits), digits)
        'digits-vae-normal-gaussian'
    """
    config = resolve_config(config, data)
    name = f"{config.data}-{config.model}"
    if config.model == "vae":
        name = f"{name}-{config.prior}-{config.posterior}"
    elif config.dequantization is not None:
        name = f"{name}-{config.dequantization}"
    return f"{name}-conditional" if config.conditional else name
