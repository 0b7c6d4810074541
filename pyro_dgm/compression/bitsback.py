r"""Bits-back coding with ANS (BB-ANS) for the VAE: a latent variable model as a codec.

For each data point :math:`x` in turn, on one ANS stack (a last-in first-out coder):

1. *decode* the latent :math:`z \sim q(z \mid x)` from the stack: this takes bits off
   it, :math:`-\log_2 Q(z \mid x)`;
2. *encode* :math:`x` under :math:`p(x \mid z)`: :math:`-\log_2 P(x \mid z)` bits;
3. *encode* :math:`z` under the prior: :math:`-\log_2 P(z)` bits.

The net cost of :math:`x` is :math:`-\log_2 P(x \mid z) - \log_2 P(z) + \log_2 Q(z \mid x)`,
on average over :math:`z` the negative ELBO in bits,

.. math:: \mathbb{E}_{q}\big[\text{net bits}\big] = -\frac{1}{\log 2}\,
    \mathbb{E}_{q(z|x)}\big[\log p(x \mid z) + \log p(z) - \log q(z \mid x)\big]
    = -\frac{\mathrm{ELBO}(x)}{\log 2},

the bits "got back" in step 1 paying for the randomness of the posterior. Decoding
runs the steps backwards, from the last data point to the first: decode :math:`z`
under the prior, :math:`x` under :math:`p(x \mid z)`, then encode :math:`z` under
:math:`q(z \mid x)` (which returns the bits of step 1).

*Latents.* Each latent coordinate is discretized into :math:`K = 2^b` buckets of equal
mass under the standard normal prior, :math:`[\Phi^{-1}(j/K), \Phi^{-1}((j+1)/K))`,
so the prior costs exactly :math:`b` bits per coordinate and the posterior's bucket
masses are differences of its normal cdf; the decoder of the VAE sees the bucket's
centre :math:`\Phi^{-1}((j + \frac12)/K)`. For fine buckets the discretization cancels
between prior and posterior (both gain :math:`\log` of the bucket width).

*Initial bits.* The first data point's latent is decoded from a stack that holds
nothing yet: the stack starts with a fixed block of pseudo-random words
(``initial_words`` 32-bit words, enough for one latent at 24 bits per coordinate).
They are part of the file; the net code length of the data is the payload less those
bits, and decoding checks that they come back unchanged.

Supported: :class:`~pyro_dgm.models.VAE` with the standard normal prior
(``prior="normal"``; a flow prior or a VampPrior has no per-coordinate cdf), a diagonal
Gaussian posterior (``posterior="gaussian"``; a flow posterior has no closed-form bucket
masses) and a discrete likelihood (Bernoulli, discretized logistic or its mixture; the
Gaussian likelihood is for real data). The VAE is coded through a float64 CPU copy,
one data point at a time (the chain is sequential).

References:
    | Practical Lossless Compression with Latent Variables using Bits Back Coding
      (Townsend et al., 2019)
    | https://arxiv.org/abs/1901.04866
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from ..models.vae import VAE
from ..utils.checks import check_int
from .backend import require_constriction
from .conditionals import factorized_log_probs
from .container import fingerprint
from .exact import Codec, float64_copy
from .quantize import PRECISION, free_weights

__all__ = ["LATENT_BITS", "BitsBackCodec"]

#: Default bits per latent coordinate: :math:`K = 4096` buckets.
LATENT_BITS = 12

_SEED = 0x5EED


def _initial_words(count: int) -> np.ndarray:
    """``count`` fixed, nonzero pseudo-random words: the initial bits of the stack."""
    rng = np.random.default_rng(_SEED)
    return rng.integers(1, 2**32, size=count, dtype=np.uint64).astype(np.uint32)


class BitsBackCodec(Codec):
    r"""BB-ANS for a :class:`~pyro_dgm.models.VAE` (see the module docstring).

    Arguments:
        vae: The VAE (standard normal prior, diagonal Gaussian posterior, discrete
            likelihood).
        latent_bits: :math:`b`, bits per latent coordinate (:math:`K = 2^b` buckets).

    Raises:
        ValueError: An unsupported prior, posterior or likelihood.

    Example:
        >>> from pyro_dgm.models import VAE
        >>> vae = VAE.for_vectors(6, 2, hidden_dims=(8,), likelihood="discretized_logistic",
        ...                       num_levels=17)
        >>> codec = BitsBackCodec(vae, latent_bits=10)
        >>> codec.num_levels, codec.initial_words  # 2 latents at 24 bits, plus 2 words
        (17, 4)
        >>> x = vae.sample(3).long()
        >>> words, fields = codec.encode_words(x)
        >>> fields
        {'latent_bits': 10, 'initial_words': 4}
        >>> torch.equal(codec.decode_words(words, tuple(x.shape), **fields), x)
        True
    """

    kind = "bits-back"
    coder = "ans"

    def __init__(self, vae: VAE, latent_bits: int = LATENT_BITS) -> None:
        self.latent_bits = check_int(latent_bits, "latent_bits", 1, 16)
        self.latent_dim = vae.latent_dim
        self.event_shape = torch.Size(vae.event_shape)
        self.vae = float64_copy(vae)
        with torch.no_grad():
            prior = self.vae.prior()
            standard = (
                isinstance(prior, Independent)
                and isinstance(prior.base_dist, Normal)
                and bool((prior.base_dist.loc == 0).all())
                and bool((prior.base_dist.scale == 1).all())
            )
            if not standard:
                raise ValueError(
                    "vae: bits-back coding needs the standard normal prior (prior='normal'), "
                    f"whose cdf gives the latent buckets; got {type(vae.prior).__name__} "
                    f"({type(prior).__name__}): a flow prior or a VampPrior has no "
                    "per-coordinate cdf"
                )
            x0 = torch.zeros(1, *self.event_shape, dtype=torch.float64)
            posterior = self.vae.posterior(x0)
            if not (
                isinstance(posterior, Independent) and isinstance(posterior.base_dist, Normal)
            ):
                raise ValueError(
                    "vae: bits-back coding needs a diagonal Gaussian posterior "
                    f"(posterior='gaussian'); got {type(vae.variational).__name__} "
                    f"({type(posterior).__name__}), whose bucket masses have no closed form"
                )
            likelihood = self.vae.decode(torch.zeros(1, self.latent_dim, dtype=torch.float64))
            try:
                _, self.num_levels = factorized_log_probs(likelihood)
            except ValueError as error:
                raise ValueError(
                    "vae: bits-back coding needs a discrete likelihood over the levels "
                    "(bernoulli, discretized_logistic, discretized_logistic_mixture); got "
                    f"{type(vae.likelihood).__name__}: {error}"
                ) from error
        k = 2**self.latent_bits
        grid = torch.arange(k + 1, dtype=torch.float64) / k
        self.edges = torch.special.ndtri(grid)  # -inf, ..., +inf
        self.centres = torch.special.ndtri((torch.arange(k, dtype=torch.float64) + 0.5) / k)
        self.initial_words = math.ceil(self.latent_dim * PRECISION / 32) + 2
        self.fingerprint = fingerprint(
            vae, tuple(self.event_shape), self.num_levels, self.latent_dim, self.latent_bits
        )

    # -- the three distributions of one data point -------------------------------
    def _posterior_free(self, x: Tensor) -> np.ndarray:
        """``(latent_dim, K)`` weights of :math:`q(z \\mid x)`'s bucket masses."""
        q = self.vae.posterior(x.to(torch.float64)[None])
        loc, scale = q.base_dist.loc[0, :, None], q.base_dist.scale[0, :, None]
        a = (self.edges[:-1] - loc) / scale
        b = (self.edges[1:] - loc) / scale
        # the difference of the cdf, taken in the tail where it does not cancel
        upper = (a + b) > 0
        mass = torch.where(
            upper,
            torch.special.ndtr(-a) - torch.special.ndtr(-b),
            torch.special.ndtr(b) - torch.special.ndtr(a),
        )
        return free_weights(torch.log(mass.clamp_min(0.0)))  # rounding can give -1e-17

    def _likelihood_free(self, buckets: np.ndarray) -> np.ndarray:
        """``(D, L)`` weights of :math:`p(x \\mid z)` at the buckets' centres."""
        z = self.centres[torch.from_numpy(buckets.astype(np.int64))][None]
        log_probs, _ = factorized_log_probs(self.vae.decode(z))
        return free_weights(log_probs.reshape(-1, self.num_levels))

    # -- the stack ----------------------------------------------------------------
    def _encode(self, values: Tensor, ans: Any) -> list[int]:
        constriction = require_constriction()
        family = constriction.stream.model.Categorical(perfect=False)
        prior = constriction.stream.model.Uniform(2**self.latent_bits)
        sizes = []
        with torch.no_grad():
            for x in values:
                buckets = ans.decode(family, self._posterior_free(x))
                symbols = x.reshape(-1).numpy().astype(np.int32)
                ans.encode_reverse(symbols, family, self._likelihood_free(buckets))
                ans.encode_reverse(buckets, prior)
                sizes.append(ans.num_valid_bits())
        return sizes

    def encode_words(self, values: Tensor) -> tuple[np.ndarray, dict[str, int]]:
        self.check_shape(tuple(values.shape))
        constriction = require_constriction()
        ans = constriction.stream.stack.AnsCoder(_initial_words(self.initial_words))
        self._encode(values, ans)
        fields = {"latent_bits": self.latent_bits, "initial_words": self.initial_words}
        return ans.get_compressed(), fields

    def decode_words(self, words: np.ndarray, shape: tuple[int, ...], **fields: int) -> Tensor:
        self.check_shape(shape)
        constriction = require_constriction()
        family = constriction.stream.model.Categorical(perfect=False)
        prior = constriction.stream.model.Uniform(2**self.latent_bits)
        ans = constriction.stream.stack.AnsCoder(words)
        out = torch.empty(shape, dtype=torch.int64)
        with torch.no_grad():
            for i in reversed(range(shape[0])):
                buckets = ans.decode(prior, self.latent_dim)
                x = ans.decode(family, self._likelihood_free(buckets))
                out[i] = torch.from_numpy(x.astype(np.int64)).reshape(shape[1:])
                ans.encode_reverse(buckets, family, self._posterior_free(out[i]))
        rest = ans.get_compressed()
        initial = _initial_words(fields["initial_words"])
        if len(rest) != len(initial) or not np.array_equal(rest, initial):
            raise ValueError(
                "data: the initial bits did not come back after decoding: the model differs "
                "from the encoder's or the file is damaged"
            )
        return out

    def code_lengths(self, values: Tensor) -> Tensor:
        """Net bits of each data point on the stack (the first one's include the bits it
        borrowed from the initial words)."""
        self.check_shape(tuple(values.shape))
        constriction = require_constriction()
        initial = _initial_words(self.initial_words)
        ans = constriction.stream.stack.AnsCoder(initial)
        start = ans.num_valid_bits()
        sizes = self._encode(values, ans)
        return torch.tensor(np.diff([start, *sizes]), dtype=torch.float64)
