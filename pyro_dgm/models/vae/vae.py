r"""The variational autoencoder as a Pyro model/guide pair built from swappable parts."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.params import param_with_module_name
from torch import Tensor, nn

from ...utils.checks import check_int, check_number, module_dtype
from ...utils.registration import CollectedParams
from .likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    CategoricalLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    GaussianLikelihood,
    Likelihood,
)
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .posteriors import GaussianPosterior, make_posterior
from .priors import PRIORS, StandardNormalPrior, VampPrior, flow_prior

__all__ = ["VAE", "VAMP_WARMUP_STEPS"]

#: The default KL warm-up of a VAE with a VampPrior, in gradient steps (see
#: benchmarks/README.md, "VampPrior collapse", for the measurements).
VAMP_WARMUP_STEPS = 500


class VAE(nn.Module):
    r"""A variational autoencoder: the Pyro ``model`` and ``guide`` of a latent variable
    model, built from a prior, an encoder with a posterior head, a decoder and a
    likelihood, each swappable.

    .. math:: p(x, z) = p(z)\, p(x \mid z), \qquad
        \mathcal{L}(x) = \mathbb{E}_{q(z|x)}\big[\log p(x \mid z) + \log p(z)
        - \log q(z \mid x)\big] \le \log p(x)

    ``model(x)`` draws ``z`` from :attr:`prior` and observes ``x`` under
    :attr:`likelihood` of :attr:`decoder` ``(z)``; ``guide(x)`` draws ``z`` from
    :meth:`posterior` ``(x)``.

    *Conditional VAE.* With ``condition_dim`` the pair models :math:`p(x \mid c)` for a
    context :math:`c` (one-hot class labels: ``model(x, context)``, ``guide(x, context)``,
    as :func:`~pyro_dgm.infer.fit` passes a batch ``(x, context)``): the prior stays
    :math:`p(z)`, the context is concatenated to the encoder's features and to the
    latent,

    .. math:: q(z \mid x, c) = q\big(z;\ [h(x), c]\big), \qquad
        p(x \mid z, c) = p\big(x;\ \mathrm{decoder}([z, c])\big), \qquad
        \mathcal{L}(x, c) \le \log p(x \mid c),

    so the decoder's input has ``latent_dim + condition_dim`` features and the
    posterior head's context ``encoder.context_dim + condition_dim``; ``sample(n, c)``
    draws :math:`z \sim p(z)` and decodes it with :math:`c` (Kingma et al., 2014, M2
    with the label observed; Sohn et al., 2015). Both put their sites in ``pyro.plate("data")`` over
    the first dimension of ``x``, their outermost plate, so that
    :func:`~pyro_dgm.infer.importance_log_likelihood` weights each point on its own
    (Burda et al.'s bound, :math:`K` up to thousands, chunked). With ``data_size``
    (which :func:`~pyro_dgm.infer.fit` passes) the plate subsamples: the minibatch
    ELBO is scaled by ``data_size / len(x)``, an unbiased estimate of the
    full-data ELBO.

    *KL warm-up.* On gradient passes the latent site is scaled by
    :math:`\beta` (``poutine.scale`` in the model *and* the guide, so the ELBO
    becomes :math:`\mathbb{E}\log p(x|z) - \beta\,\mathrm{KL}`): ``beta =
    kl_weight * min(1, step / warmup_steps)``, where ``step`` counts the model's
    gradient-enabled calls. The default is :data:`VAMP_WARMUP_STEPS` steps with a
    :class:`~.priors.VampPrior` and none with any other prior: with a flexible
    likelihood (the discretized logistic mixture) and little data, a VampPrior
    collapses within the first hundred steps without it, since its components are
    the posterior's own, so an encoder that ignores :math:`x` makes the KL zero.
    Under ``torch.no_grad()`` (validation in ``fit``,
    ``evaluate_loss``, ``importance_log_likelihood``) :math:`\beta = 1`: what is
    reported is always the true ELBO.

    *Taking the parts out.* ``vae.prior()`` is a distribution over ``z`` and
    ``vae.posterior(x)`` the guide's distribution, to use in a model or guide
    of one's own (register the parameters with ``pyro.module("vae", vae)``).

    Cost per step: one encoder and one decoder pass per point, plus the prior's
    scoring (one pass per layer for a MAF prior, :math:`K` encoder passes for a
    VampPrior) and the posterior flow's forward passes.

    References:
        | Auto-Encoding Variational Bayes (Kingma & Welling, 2014)
        | https://arxiv.org/abs/1312.6114
        | Importance Weighted Autoencoders (Burda et al., 2016)
        | https://arxiv.org/abs/1509.00519
        | Ladder Variational Autoencoders (Sønderby et al., 2016) (KL warm-up)
        | https://arxiv.org/abs/1602.02282
        | Semi-Supervised Learning with Deep Generative Models (Kingma et al., 2014)
        | https://arxiv.org/abs/1406.5298
        | Learning Structured Output Representation using Deep Conditional Generative
          Models (Sohn et al., 2015)

    *Encoders and decoders that return distributions* (those of Pyro's and zuko's VAE
    tutorials) are accepted where that is sound. An encoder that returns :math:`q(z \mid x)`
    itself (batch shape ``(N,)``, event shape ``(latent_dim,)``) is the whole posterior:
    pass ``posterior=None``. A decoder that returns :math:`p(x \mid z)` itself (event
    shape the data's) is the whole likelihood: the ``likelihood`` then only declares the
    data (its shape and domain, checked on every call, and the encoder's input
    ``likelihood.normalize(x)``), so it must have no parameters of its own. A
    distribution of the wrong shape, or one where a tensor is expected, is refused with
    a ``ValueError`` that says which.

    Arguments:
        encoder: Normalized data ``(N, *event_shape)`` to the context ``(N, context_dim)``
            that ``posterior`` reads, or to :math:`q(z \mid x)` itself (then
            ``posterior=None``).
        decoder: Latents ``(..., latent_dim)`` (``(..., latent_dim + condition_dim)``,
            the latent and the context, for a conditional VAE) to
            ``(..., *likelihood.param_shape)``, or to :math:`p(x \mid z)` itself, a
            distribution with batch shape ``(...)`` and event shape ``event_shape``.
        prior: A module whose call returns a distribution over ``(latent_dim,)``:
            :class:`~.priors.StandardNormalPrior`, a :class:`~pyro_dgm.flows.Flow`
            (:func:`~.priors.flow_prior`), :class:`~pyro_dgm.flows.ZukoFlow`,
            :class:`~.priors.VampPrior`.
        posterior: A module from the context to a distribution over ``(latent_dim,)``:
            :class:`~.posteriors.GaussianPosterior`, :class:`~.posteriors.FlowPosterior`;
            or ``None`` when the encoder returns that distribution itself.
        likelihood: A :class:`~.likelihoods.Likelihood`; its ``event_shape`` is the data's.
        latent_dim: The latent dimension.
        kl_weight: :math:`\beta` after warm-up (positive; 1 for the ELBO).
        warmup_steps: Steps of linear KL warm-up (0: none; ``None``:
            :data:`VAMP_WARMUP_STEPS` with a VampPrior, else 0).
        name: The name under which ``pyro.module`` registers the parameters.
        condition_dim: The size of the context :math:`c` of a conditional VAE (10 for
            one-hot digit labels), or ``None`` for an unconditional one.

    Example:
        >>> vae = VAE.for_images((1, 8, 8), latent_dim=4, prior="flow", posterior="iaf")
        >>> x = torch.randint(0, 2, (5, 1, 8, 8))
        >>> loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
        >>> vae.sample(3).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: nn.Module,
        posterior: nn.Module | None,
        likelihood: Likelihood,
        latent_dim: int,
        *,
        kl_weight: float = 1.0,
        warmup_steps: int | None = None,
        name: str = "vae",
        condition_dim: int | None = None,
    ) -> None:
        super().__init__()
        for arg, value in (
            ("encoder", encoder),
            ("decoder", decoder),
            ("prior", prior),
            ("posterior", posterior),
        ):
            if value is None and arg == "posterior":
                continue
            if not isinstance(value, nn.Module):
                raise ValueError(
                    f"{arg} must be a torch nn.Module (so that its parameters are trained), "
                    f"got {type(value).__name__}"
                )
        if not isinstance(likelihood, Likelihood):
            raise ValueError(f"likelihood must be a Likelihood, got {type(likelihood).__name__}")
        self.latent_dim = check_int(latent_dim, "latent_dim", 1)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.variational = posterior
        self.likelihood = likelihood
        self.event_shape = likelihood.event_shape
        self.kl_weight = kl_weight
        if warmup_steps is None:
            warmup_steps = VAMP_WARMUP_STEPS if isinstance(prior, VampPrior) else 0
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", 0)
        self.num_steps = 0
        self.name = name
        self.condition_dim = (
            None if condition_dim is None else check_int(condition_dim, "condition_dim", 1)
        )
        if self.condition_dim is not None and posterior is None:
            raise ValueError(
                "posterior: None (the encoder returns q(z | x) itself) cannot make a conditional "
                "VAE, which concatenates the context to the encoder's features; give the "
                "encoder features h and a posterior head (GaussianPosterior(context_dim + "
                "condition_dim, latent_dim))"
            )
        if self.condition_dim is not None and isinstance(prior, VampPrior):
            raise ValueError(
                "prior: a VampPrior mixes the posterior at pseudo-inputs, which a conditional "
                "VAE's q(z | x, c) cannot do without a context for them; use a normal or "
                "flow prior"
            )
        post_dim = (
            latent_dim if posterior is None else getattr(posterior, "latent_dim", latent_dim)
        )
        if post_dim != latent_dim:
            raise ValueError(f"posterior has latent_dim {post_dim}, expected {latent_dim}")
        with torch.no_grad():
            p = prior()
        if (
            not isinstance(p, torch.distributions.Distribution)
            or p.batch_shape != ()
            or (p.event_shape != (latent_dim,))
        ):
            raise ValueError(
                f"prior() must return a distribution with batch shape () and event shape "
                f"({latent_dim},), got {p!r:.120}"
            )

    # -- settings --------------------------------------------------------------
    @property
    def kl_weight(self) -> float:
        r""":math:`\beta` after warm-up (the weight of the latent site on gradient passes)."""
        return self._kl_weight

    @kl_weight.setter
    def kl_weight(self, value: float) -> None:
        self._kl_weight = check_number(value, "kl_weight", positive=True)

    @property
    def current_kl_weight(self) -> float:
        """The weight the next pass applies: 1 without gradients, else the warm-up's."""
        if not torch.is_grad_enabled():
            return 1.0
        ramp = min(1.0, (self.num_steps + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return self._kl_weight * ramp

    @property
    def training_objective(self) -> str | None:
        """What a training loss of this pair is, when it is not the negative ELBO (read by
        :func:`~pyro_dgm.infer.fit` into ``History.objective``); ``None`` otherwise."""
        if self._kl_weight == 1.0 and not self.warmup_steps:
            return None
        ramp = f", reached linearly over {self.warmup_steps} steps" if self.warmup_steps else ""
        return (
            f"negative weighted ELBO: the KL term scaled by beta = {self._kl_weight:g}{ramp} "
            "(validation and test losses use beta = 1, the ELBO)"
        )

    @property
    def num_dims(self) -> int:
        """Dimensions of one data point (for bits/dim)."""
        return math.prod(self.event_shape)

    # -- the pair --------------------------------------------------------------
    def _check_data(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a Tensor, got {type(x).__name__}")
        if x.dim() != 1 + len(self.event_shape) or x.shape[1:] != self.event_shape or not len(x):
            raise ValueError(
                f"x must have shape (N, {', '.join(map(str, self.event_shape))}) with N >= 1, "
                f"got {tuple(x.shape)}"
            )
        self.likelihood.check(x)

    def _plate(self, x: Tensor, data_size: int | None) -> pyro.plate:
        n = x.shape[0]
        if data_size is None:
            return pyro.plate("data", n)
        check_int(data_size, f"data_size (at least the batch size {n})", n)
        return pyro.plate("data", size=data_size, subsample=torch.arange(n, device=x.device))

    def _latent_scale(self) -> contextlib.AbstractContextManager:
        weight = self.current_kl_weight
        return poutine.scale(scale=weight) if weight != 1.0 else contextlib.nullcontext()

    def _register(self) -> None:
        """``pyro.module(name, self)``, refusing a param store that holds another module's
        tensors under the same names (Pyro would train those, silently, instead of ours).
        Skipped inside :func:`~pyro_dgm.infer.fit` once it holds these very tensors."""
        if CollectedParams.innermost_holding(self.name, self):
            return
        pyro.module(self.name, self)
        store = pyro.get_param_store()
        for param_name, p in self.named_parameters():
            if p.requires_grad and store[param_with_module_name(self.name, param_name)] is not p:
                raise ValueError(
                    f"the param store holds a different tensor named "
                    f"{param_with_module_name(self.name, param_name)!r} (from another module "
                    f"registered as {self.name!r}): call pyro.clear_param_store() or give this "
                    "VAE another name"
                )

    def _check_context(self, context: Tensor | None, batch: torch.Size | None = None) -> None:
        """A context of shape ``(*batch, condition_dim)`` for a conditional VAE, and none
        for an unconditional one."""
        if self.condition_dim is None:
            if context is not None:
                shape = tuple(context.shape) if isinstance(context, Tensor) else context
                raise ValueError(
                    f"context: this VAE was built without condition_dim (unconditional), "
                    f"got a context {shape!r:.80}"
                )
            return
        dims = [*map(str, batch)] if batch is not None else ["..."]
        expected = f"({', '.join([*dims, str(self.condition_dim)])})"
        if not isinstance(context, Tensor) or not context.is_floating_point():
            got = "None" if context is None else type(context).__name__
            got += f" of dtype {context.dtype}" if isinstance(context, Tensor) else ""
            raise ValueError(
                f"context: this VAE is conditional (condition_dim={self.condition_dim}): "
                f"expected a floating tensor {expected} (one-hot encode class labels), got {got}"
            )
        shape_ok = context.dim() >= 1 and context.shape[-1] == self.condition_dim
        if not shape_ok or (batch is not None and context.shape[:-1] != batch):
            raise ValueError(f"context: expected shape {expected}, got {tuple(context.shape)}")

    def model(
        self, x: Tensor, context: Tensor | None = None, data_size: int | None = None
    ) -> Tensor:
        """The generative model: ``z ~ prior``, ``x ~ likelihood(decoder(z))`` (of
        ``decoder([z, context])`` for a conditional VAE); returns ``z``."""
        self._check_data(x)
        self._check_context(context, x.shape[:1])
        self._register()
        with self._plate(x, data_size):
            with self._latent_scale():
                z = pyro.sample("z", self.prior())
            obs = self.likelihood.observe(x, module_dtype(self))
            pyro.sample("x", self.decode(z, context), obs=obs)
        if torch.is_grad_enabled():
            self.num_steps += 1
        return z

    def guide(
        self, x: Tensor, context: Tensor | None = None, data_size: int | None = None
    ) -> Tensor:
        """The amortized guide: ``z ~ posterior(x, context)``; returns ``z``."""
        self._check_data(x)
        self._register()
        with self._plate(x, data_size), self._latent_scale():
            return pyro.sample("z", self.posterior(x, context))

    # -- the parts ---------------------------------------------------------------
    def posterior(self, x: Tensor, context: Tensor | None = None) -> dist.TorchDistribution:
        r"""The guide's distribution :math:`q(z \mid x)` (:math:`q(z \mid x, c)` of a
        conditional VAE), batch shape ``(N,)``."""
        self._check_data(x)
        self._check_context(context, x.shape[:1])
        h = self.encoder(self.likelihood.normalize(x, module_dtype(self)))
        if isinstance(h, torch.distributions.Distribution):
            if self.variational is not None:
                raise ValueError(
                    f"encoder: returned a distribution ({type(h).__name__}), which is q(z | x) "
                    f"itself, but the VAE also has a posterior head "
                    f"({type(self.variational).__name__}) for encoder features: build it with "
                    "posterior=None to use the encoder's distribution, or make the encoder "
                    "return features h of shape (N, context_dim)"
                )
            return _checked(h, "encoder", "q(z | x)", x.shape[:1], (self.latent_dim,))
        if not isinstance(h, Tensor):
            raise ValueError(
                f"encoder: expected features h (a tensor (N, context_dim)) or q(z | x) (a "
                f"distribution), got {type(h).__name__}"
            )
        if self.variational is None:
            raise ValueError(
                f"encoder: with posterior=None the encoder must return q(z | x), a distribution "
                f"with batch shape ({len(x)},) and event shape ({self.latent_dim},), got a "
                f"tensor of shape {tuple(h.shape)}; for encoder features pass a posterior head "
                f"(GaussianPosterior({h.shape[-1] if h.dim() else '?'}, {self.latent_dim}))"
            )
        if context is not None:
            h = torch.cat([h, context.to(h.dtype)], dim=-1)
        return self.variational(h)

    def decode(self, z: Tensor, context: Tensor | None = None) -> dist.TorchDistribution:
        r""":math:`p(x \mid z)` for latents ``(..., latent_dim)``; :math:`p(x \mid z, c)`
        of a conditional VAE for a context ``(..., condition_dim)`` that broadcasts
        against the latents' batch dimensions."""
        self._check_context(context)
        if context is not None:
            batch = torch.broadcast_shapes(z.shape[:-1], context.shape[:-1])
            z = torch.cat(
                [z.expand(*batch, z.shape[-1]), context.to(z.dtype).expand(*batch, -1)], dim=-1
            )
        out = self.decoder(z)
        if not isinstance(out, torch.distributions.Distribution):
            return self.likelihood(out)
        trained = [n for n, p in self.likelihood.named_parameters() if p.requires_grad]
        if trained:
            raise ValueError(
                f"decoder: returned p(x | z) itself ({type(out).__name__}), so the likelihood's "
                f"own parameters {trained} would never be trained: declare the data with a "
                "likelihood without parameters (BernoulliLikelihood, GaussianLikelihood(shape, "
                "scale=1.0), a discretized one), or make the decoder return the likelihood's "
                "parameters"
            )
        return _checked(out, "decoder", "p(x | z)", z.shape[:-1], self.event_shape)

    @torch.no_grad()
    def sample(self, num_samples: int, context: Tensor | None = None) -> Tensor:
        """Draw data points from the model: ``(num_samples, *event_shape)``, or for a
        conditional VAE given a context ``(*batch, condition_dim)``,
        ``(num_samples, *batch, *event_shape)`` (e.g. one row of draws per class)."""
        self._check_context(context)
        batch = () if context is None else tuple(context.shape[:-1])
        z = self.prior().sample((check_int(num_samples, "num_samples", 1), *batch))
        return self.decode(z, context).sample()

    @torch.no_grad()
    def init_pseudo_inputs(self, x: Tensor) -> None:
        """Set a VampPrior's pseudo-inputs to data points ``x`` (one per component),
        normalized as the encoder sees data; a start that avoids early posterior collapse
        better than random pseudo-inputs."""
        if not isinstance(self.prior, VampPrior):
            raise ValueError(f"the prior is a {type(self.prior).__name__}, not a VampPrior")
        self._check_data(x)
        k = self.prior.num_components
        if len(x) != k:
            raise ValueError(f"x must hold {k} data points (num_components), got {len(x)}")
        inputs = self.likelihood.normalize(x, self.prior.pseudo_inputs.dtype)
        self.prior.pseudo_inputs.copy_(inputs.to(self.prior.pseudo_inputs.device))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""The mean of :math:`p(x \mid z)` at one draw :math:`z \sim q(z \mid x)` (with the
        context of a conditional VAE): ``(N, *event_shape)``, no gradient.

        Example:
            >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,))
            >>> vae.reconstruct(torch.randn(4, 3)).shape
            torch.Size([4, 3])
        """
        return self.decode(self.posterior(x, context).sample(), context).mean

    @torch.no_grad()
    def posterior_predictive(
        self, x: Tensor, num_samples: int = 1, context: Tensor | None = None
    ) -> Tensor:
        r"""New data drawn given each data point: :math:`\tilde x \sim p(\tilde x \mid z)`,
        :math:`z \sim q(z \mid x)`, ``(num_samples, N, *event_shape)``, no gradient.

        .. math:: p(\tilde x \mid x) \approx \int p(\tilde x \mid z)\, q(z \mid x)\, dz

        ``pyro.infer.Predictive(vae.model, guide=vae.guide)`` returns the *observed*
        ``x`` at the site ``"x"`` (Pyro's semantics for an observed site); this is what
        ``Predictive(poutine.uncondition(vae.model), guide=vae.guide,
        return_sites=["x"])`` draws, through the pair's own decoder in one batched pass.

        Arguments:
            x: Data ``(N, *event_shape)``.
            num_samples: Draws per data point.
            context: The context ``(N, condition_dim)`` of a conditional VAE.

        Example:
            >>> vae = VAE.for_vectors(3, latent_dim=2, hidden_dims=(8,))
            >>> vae.posterior_predictive(torch.randn(4, 3), num_samples=5).shape
            torch.Size([5, 4, 3])
        """
        n = check_int(num_samples, "num_samples", 1)
        z = self.posterior(x, context).sample((n,))
        return self.decode(z, context).sample()

    # -- ready-made ----------------------------------------------------------------
    @classmethod
    def for_images(
        cls,
        image_shape: Sequence[int],
        latent_dim: int = 16,
        *,
        prior: str | nn.Module = "normal",
        posterior: str | nn.Module | None = "gaussian",
        likelihood: str | Likelihood = "bernoulli",
        num_levels: int | None = None,
        channels: int = 32,
        context_dim: int = 128,
        prior_layers: int = 4,
        posterior_steps: int = 4,
        flow_hidden_dims: Sequence[int] | None = None,
        num_pseudo_inputs: int = 50,
        num_components: int = 5,
        kl_weight: float = 1.0,
        warmup_steps: int | None = None,
        name: str = "vae",
        condition_dim: int | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
    ) -> VAE:
        r"""A VAE for images ``(C, H, W)`` with a :class:`~.networks.ConvEncoder` and
        :class:`~.networks.ConvDecoder` (8x8 digits, 28x28 MNIST, ...), or the encoder
        and decoder given.

        Arguments:
            image_shape: ``(C, H, W)``.
            latent_dim: The latent dimension.
            prior: ``"normal"``, ``"flow"`` (MAF, ``prior_layers`` layers), ``"vamp"``
                (``num_pseudo_inputs`` pseudo-inputs), or a prior module.
            posterior: ``"gaussian"``, ``"iaf"``, ``"planar"``, ``"householder"``,
                ``"sylvester"`` (``posterior_steps`` steps), a posterior module
                taking a context of size ``context_dim``, or ``None`` for an
                ``encoder`` that returns :math:`q(z \mid x)` itself.
            likelihood: ``"bernoulli"``, ``"gaussian"``, ``"discretized_logistic"``,
                ``"discretized_logistic_mixture"`` (``num_components`` components),
                ``"categorical"`` (a softmax over the levels of each pixel), or a
                :class:`~.likelihoods.Likelihood`.
            num_levels: :math:`L` for the discretized and categorical likelihoods.
            channels: Channels of the first convolution.
            context_dim: The size of the encoder's context :math:`h`.
            prior_layers: Layers of the flow prior.
            posterior_steps: Steps of a flow posterior.
            flow_hidden_dims: Hidden sizes of the flows' networks.
            num_pseudo_inputs: The VampPrior's :math:`K`.
            num_components: Components of the mixture likelihood.
            kl_weight: :math:`\beta` after warm-up.
            warmup_steps: Steps of KL warm-up (``None``: :data:`VAMP_WARMUP_STEPS` for
                the VampPrior, else 0).
            name: The ``pyro.module`` name.
            condition_dim: The size of the context :math:`c` of a conditional VAE
                (concatenated to the encoder's features :math:`h` and to the latent),
                or ``None``. (``context_dim`` is the size of :math:`h` itself.)
            encoder: An encoder of one's own in place of the ``ConvEncoder``: to
                features :math:`h` (with a ``context_dim`` attribute, for a posterior
                given by name) or to :math:`q(z \mid x)` itself (``posterior=None``).
            decoder: A decoder of one's own in place of the ``ConvDecoder``: to the
                likelihood's parameters, or to :math:`p(x \mid z)` itself.

        Example:
            >>> vae = VAE.for_images((1, 8, 8), latent_dim=2, channels=4, context_dim=8,
            ...                      likelihood="discretized_logistic", num_levels=17)
            >>> vae.sample(2).shape
            torch.Size([2, 1, 8, 8])
        """
        shape = torch.Size(image_shape)
        if len(shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(shape)}")
        extra = _condition_dim(condition_dim)
        lik = _make_likelihood(likelihood, shape, num_levels, num_components)
        if encoder is None:
            encoder = ConvEncoder(shape, channels, context_dim)
        if decoder is None:
            decoder = ConvDecoder(
                check_int(latent_dim, "latent_dim", 1) + extra, lik.param_shape, channels
            )
        return cls._assemble(
            encoder,
            decoder,
            lik,
            latent_dim,
            prior,
            posterior,
            prior_layers,
            posterior_steps,
            flow_hidden_dims,
            num_pseudo_inputs,
            kl_weight,
            warmup_steps,
            name,
            condition_dim,
        )

    @classmethod
    def for_vectors(
        cls,
        input_dim: int,
        latent_dim: int = 2,
        *,
        hidden_dims: Sequence[int] = (128, 128),
        prior: str | nn.Module = "normal",
        posterior: str | nn.Module | None = "gaussian",
        likelihood: str | Likelihood = "gaussian",
        num_levels: int | None = None,
        prior_layers: int = 4,
        posterior_steps: int = 4,
        flow_hidden_dims: Sequence[int] | None = None,
        num_pseudo_inputs: int = 50,
        num_components: int = 5,
        kl_weight: float = 1.0,
        warmup_steps: int | None = None,
        name: str = "vae",
        condition_dim: int | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
    ) -> VAE:
        r"""A VAE for vectors ``(D,)`` (flattened images too) with an
        :class:`~.networks.MLPEncoder` (layers ``hidden_dims``, the last being the
        context size) and a mirrored :class:`~.networks.MLPDecoder`, or the encoder and
        decoder given. The other arguments are those of :meth:`for_images`.

        The way in for the encoder and decoder modules of Pyro's and zuko's VAE
        tutorials, which return distributions: ``encoder=`` a module returning
        :math:`q(z \mid x)` with ``posterior=None``, ``decoder=`` a module returning
        :math:`p(x \mid z)`, and ``likelihood`` naming the data (``"bernoulli"`` for
        binary pixels).

        Example:
            >>> class Encoder(nn.Module):  # returns q(z | x), as in Pyro's tutorial
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.net = nn.Linear(6, 4)
            ...     def forward(self, x):
            ...         loc, log_scale = self.net(x).chunk(2, dim=-1)
            ...         return dist.Normal(loc, log_scale.exp()).to_event(1)
            >>> class Decoder(nn.Module):  # returns p(x | z)
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.net = nn.Linear(2, 6)
            ...     def forward(self, z):
            ...         return dist.Bernoulli(logits=self.net(z)).to_event(1)
            >>> vae = VAE.for_vectors(6, latent_dim=2, encoder=Encoder(), decoder=Decoder(),
            ...                       posterior=None, likelihood="bernoulli", name="tutorial_vae")
            >>> x = torch.randint(0, 2, (5, 6)).float()
            >>> loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
            >>> vae.posterior_predictive(x, num_samples=3).shape
            torch.Size([3, 5, 6])
        """
        d = check_int(input_dim, "input_dim", 1)
        extra = _condition_dim(condition_dim)
        lik = _make_likelihood(likelihood, torch.Size([d]), num_levels, num_components)
        if encoder is None:
            encoder = MLPEncoder(d, hidden_dims)
        if decoder is None:
            decoder = MLPDecoder(
                check_int(latent_dim, "latent_dim", 1) + extra,
                lik.param_shape,
                list(hidden_dims)[::-1],
            )
        return cls._assemble(
            encoder,
            decoder,
            lik,
            latent_dim,
            prior,
            posterior,
            prior_layers,
            posterior_steps,
            flow_hidden_dims,
            num_pseudo_inputs,
            kl_weight,
            warmup_steps,
            name,
            condition_dim,
        )

    @classmethod
    def _assemble(
        cls,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        latent_dim: int,
        prior: str | nn.Module,
        posterior: str | nn.Module | None,
        prior_layers: int,
        posterior_steps: int,
        flow_hidden_dims: Sequence[int] | None,
        num_pseudo_inputs: int,
        kl_weight: float,
        warmup_steps: int | None,
        name: str,
        condition_dim: int | None = None,
    ) -> VAE:
        if isinstance(posterior, str):
            if not isinstance(getattr(encoder, "context_dim", None), int):
                raise ValueError(
                    f"posterior={posterior!r} builds a head on the encoder's features, but the "
                    f"encoder ({type(encoder).__name__}) has no int context_dim attribute to "
                    "size it: set encoder.context_dim, pass a posterior module, or "
                    "posterior=None if the encoder returns q(z | x) itself"
                )
            features = encoder.context_dim + _condition_dim(condition_dim)
            posterior = make_posterior(
                posterior, features, latent_dim, posterior_steps, flow_hidden_dims
            )
        if isinstance(prior, str):
            if prior not in PRIORS:
                raise ValueError(f"prior must be one of {', '.join(PRIORS)}; got {prior!r}")
            if prior == "normal":
                prior = StandardNormalPrior(latent_dim)
            elif prior == "flow":
                prior = flow_prior(latent_dim, "maf", prior_layers, flow_hidden_dims)
            else:
                if condition_dim is not None:
                    raise ValueError(
                        "prior='vamp' mixes the posterior at pseudo-inputs, which a conditional "
                        "VAE's q(z | x, c) cannot do without a context for them; use 'normal' "
                        "or 'flow'"
                    )
                if not isinstance(posterior, GaussianPosterior):
                    raise ValueError(
                        "prior='vamp' needs a posterior with a Gaussian stage "
                        f"(GaussianPosterior or FlowPosterior), got {type(posterior).__name__}"
                    )
                k = num_pseudo_inputs
                shape = getattr(encoder, "input_shape", likelihood.event_shape)
                init = (
                    torch.randn(k, *shape)
                    if isinstance(likelihood, GaussianLikelihood)
                    else torch.rand(k, *shape)
                )
                prior = VampPrior(encoder, posterior, k, shape, init=init)
        return cls(
            encoder,
            decoder,
            prior,
            posterior,
            likelihood,
            latent_dim,
            kl_weight=kl_weight,
            warmup_steps=warmup_steps,
            name=name,
            condition_dim=condition_dim,
        )


def _checked(
    d: torch.distributions.Distribution,
    owner: str,
    what: str,
    batch: Sequence[int],
    event: Sequence[int],
) -> torch.distributions.Distribution:
    """``d`` when its batch and event shapes are ``batch`` and ``event``, else a ValueError
    naming ``owner`` (the module that returned it)."""
    if d.batch_shape != torch.Size(batch) or d.event_shape != torch.Size(event):
        hint = (
            " (a distribution over coordinates needs .to_event(1) to make them one event)"
            if d.event_shape == () and d.batch_shape[-1:] == torch.Size(event)[-1:]
            else ""
        )
        raise ValueError(
            f"{owner}: expected {what} with batch shape {tuple(batch)} and event shape "
            f"{tuple(event)}, got {type(d).__name__} with batch shape {tuple(d.batch_shape)} and "
            f"event shape {tuple(d.event_shape)}{hint}"
        )
    return d


def _condition_dim(condition_dim: int | None) -> int:
    """The features a context adds (0 without one)."""
    return 0 if condition_dim is None else check_int(condition_dim, "condition_dim", 1)


def _make_likelihood(
    spec: str | Likelihood,
    event_shape: torch.Size,
    num_levels: int | None,
    num_components: int,
) -> Likelihood:
    if isinstance(spec, Likelihood):
        if spec.event_shape != event_shape:
            raise ValueError(
                f"likelihood has event shape {tuple(spec.event_shape)}, expected "
                f"{tuple(event_shape)}"
            )
        return spec
    if spec not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}; got {spec!r}")
    if spec == "bernoulli":
        if num_levels not in (None, 2):
            raise ValueError(
                f"likelihood='bernoulli' is for binary data (num_levels 2 or None), got "
                f"num_levels={num_levels!r}"
            )
        return BernoulliLikelihood(event_shape)
    if spec == "gaussian":
        if num_levels is not None:
            raise ValueError(
                f"likelihood='gaussian' is for real data, got num_levels={num_levels!r}; use "
                "'discretized_logistic' for integer levels"
            )
        return GaussianLikelihood(event_shape)
    if num_levels is None:
        raise ValueError(
            f"likelihood={spec!r} needs num_levels (e.g. 17 for digits, 256 for 8 bits)"
        )
    if spec == "discretized_logistic":
        return DiscretizedLogisticLikelihood(event_shape, num_levels)
    if spec == "categorical":
        return CategoricalLikelihood(event_shape, num_levels)
    return DiscretizedLogisticMixtureLikelihood(event_shape, num_levels, num_components)
