r"""Variational autoencoders as Pyro model/guide pairs: priors (standard normal, flow,
VampPrior), posteriors (diagonal Gaussian, IAF, planar, Householder, Sylvester),
likelihoods (Bernoulli, Gaussian, discretized logistic and its mixture, categorical), and
MLP / convolutional encoders and decoders.

.. math:: p(x, z) = p(z)\, p(x \mid z), \qquad
    \log p(x) \ge \log \frac1K \sum_{k=1}^K \frac{p(x, z_k)}{q(z_k \mid x)}
    \ge \mathbb E_{q(z|x)}\big[\log p(x, z) - \log q(z \mid x)\big],
    \quad z_k \sim q(z \mid x)

(the importance-weighted bound of Burda et al. for :math:`K` draws, the ELBO for
:math:`K = 1`). The prior :math:`p(z)` is a module returning a distribution, the
posterior :math:`q(z \mid x)` an encoder with a posterior head (or an encoder that
returns it), the likelihood :math:`p(x \mid z)` a decoder with a
:class:`~.likelihoods.Likelihood` (or a decoder that returns it).

.. code-block:: python

    vae = VAE.for_images((1, 8, 8), latent_dim=16, prior="flow", posterior="iaf",
                         likelihood="discretized_logistic", num_levels=17)
    infer.fit(vae.model, vae.guide, digits)
    infer.importance_log_likelihood(vae.model, vae.guide, digits.test, num_samples=1000)
"""

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
from .posteriors import (
    POSTERIORS,
    ConditionalSylvester,
    ConditionedSylvester,
    FlowPosterior,
    GaussianPosterior,
    conditional_sylvester,
    make_posterior,
)
from .priors import PRIORS, StandardNormalPrior, VampPrior, flow_prior
from .vae import VAE, VAMP_WARMUP_STEPS

__all__ = [
    "LIKELIHOODS",
    "POSTERIORS",
    "PRIORS",
    "VAE",
    "VAMP_WARMUP_STEPS",
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "ConditionalSylvester",
    "ConditionedSylvester",
    "ConvDecoder",
    "ConvEncoder",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "FlowPosterior",
    "GaussianLikelihood",
    "GaussianPosterior",
    "Likelihood",
    "MLPDecoder",
    "MLPEncoder",
    "StandardNormalPrior",
    "VampPrior",
    "conditional_sylvester",
    "flow_prior",
    "make_posterior",
]
