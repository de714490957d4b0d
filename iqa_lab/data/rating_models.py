"""Label models of rating distributions: multinomial distributions over K ordered rating
categories (1..K, ACR: K = 5) parameterised by their mean and variance, after the study of
rating-distribution families fitted to KonIQ-10k and VQEG HDTV (seed abstract "families of
multinomial probability distributions parameterized by mean and variance").

- ``quantised_normal`` / ``quantised_logistic``: the rating is a latent quality ``X ~ N(μ, σ²)``
  (or logistic with scale ``σ·√3/π``, the same SD) quantised at the thresholds ``1.5, 2.5, …,
  K − 0.5`` (the outer categories take the tails). ``(μ, σ)`` are fitted per image so that the
  discrete distribution's mean and variance equal the given ones (method of moments, solved by
  damped Gauss-Newton on all images at once).
- ``beta_binomial``: ``rating − 1 ~ BetaBinomial(K − 1, α, β)``, fitted by the method of moments in
  closed form. Under-dispersed ratings (variance below the binomial's ``(K−1)·p·(1−p)``) have no
  beta-binomial; they get the binomial (``α + β → ∞``, here ``α + β = 1e6``).

Choices the abstract leaves open: thresholds midway between categories; the moments matched are
the per-image mean and the rating variance as given (KonIQ-10k's ``SD`` is the sample SD,
``ddof = 1``: ``empirical_moments`` says which); the study's maximum-entropy distribution and the
generalised score distribution are not implemented.

``from_mos`` gives a database without histograms (BIQ2021, synthetic) a distribution: MOS on
[0, 1] is mapped to the mean rating ``1 + (K − 1)·mos`` and paired with an assumed SD.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import special, stats

from iqa_lab.errors import ConfigError

BETA_BINOMIAL_MAX_CONCENTRATION = 1e6


def categories(k: int) -> np.ndarray:
    return np.arange(1, k + 1, dtype=float)


def moments(pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance of ``(N, K)`` distributions over ratings 1..K."""
    pmf = np.asarray(pmf, dtype=float)
    pmf = pmf / pmf.sum(axis=-1, keepdims=True)
    ratings = categories(pmf.shape[-1])
    mean = pmf @ ratings
    return mean, pmf @ ratings**2 - mean**2


def empirical_moments(pmf: np.ndarray, counts: np.ndarray | None = None) -> tuple:
    """Mean and variance of rating histograms (fractions); with the number of ratings ``counts``
    the variance is the sample variance (``ddof = 1``), as KonIQ-10k's ``SD`` is."""
    mean, var = moments(pmf)
    if counts is not None:
        counts = np.asarray(counts, dtype=float)
        var = var * counts / (counts - 1)
    return mean, var


class QuantisedLatent:
    """A continuous latent quality quantised into K categories (module docstring)."""

    def __init__(self, cdf: Callable[[np.ndarray], np.ndarray], k: int = 5):
        self.cdf, self.k = cdf, k

    def pmf(self, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        mu, sigma = np.asarray(mu, float)[..., None], np.asarray(sigma, float)[..., None]
        thresholds = np.arange(1.5, self.k, 1.0)
        inner = self.cdf((thresholds - mu) / sigma)
        cumulative = np.concatenate(
            [np.zeros_like(inner[..., :1]), inner, np.ones_like(inner[..., :1])], axis=-1
        )
        return np.diff(cumulative, axis=-1)

    def fit(self, mean, var, iterations: int = 60) -> tuple[np.ndarray, np.ndarray]:
        """``(μ, σ)`` per image whose quantised distribution has the given mean and variance as
        nearly as the family allows (least squares on the two moments)."""
        mean, var = np.atleast_1d(np.asarray(mean, float)), np.atleast_1d(np.asarray(var, float))
        target = np.stack([mean, np.sqrt(np.maximum(var, 0))], axis=-1)
        params = np.stack([mean, np.log(np.maximum(np.sqrt(var), 0.05))], axis=-1)
        damping = np.full(len(mean), 1e-3)

        def residual(p):
            m, v = moments(self.pmf(p[:, 0], np.exp(p[:, 1])))
            return np.stack([m, np.sqrt(np.maximum(v, 0))], axis=-1) - target

        r = residual(params)
        for _ in range(iterations):
            step = 1e-6
            jac = np.stack(
                [(residual(params + step * np.eye(2)[j]) - r) / step for j in range(2)], axis=-1
            )  # (N, 2 residuals, 2 params)
            jtj = np.einsum("nij,nik->njk", jac, jac) + damping[:, None, None] * np.eye(2)
            delta = np.linalg.solve(jtj, -np.einsum("nij,ni->nj", jac, r)[..., None])[..., 0]
            trial = params + np.clip(delta, -1.0, 1.0)
            r_trial = residual(trial)
            better = (r_trial**2).sum(-1) < (r**2).sum(-1)
            params[better], r[better] = trial[better], r_trial[better]
            damping = np.where(better, damping / 3, damping * 4)
        return params[:, 0], np.exp(params[:, 1])

    def from_moments(self, mean, var) -> np.ndarray:
        return self.pmf(*self.fit(mean, var))


class BetaBinomial:
    """``rating − 1 ~ BetaBinomial(K − 1, α, β)`` by the method of moments."""

    def __init__(self, k: int = 5):
        self.k = k

    def fit(self, mean, var) -> tuple[np.ndarray, np.ndarray]:
        n = self.k - 1
        p = np.clip((np.asarray(mean, float) - 1) / n, 1e-6, 1 - 1e-6)
        binomial_var = n * p * (1 - p)
        # var = n p (1-p) (1 + (n-1) ρ), ρ = 1 / (α + β + 1)
        rho = (np.asarray(var, float) / binomial_var - 1) / (n - 1)
        rho = np.clip(rho, 1 / (BETA_BINOMIAL_MAX_CONCENTRATION + 1), 1 - 1e-6)
        concentration = 1 / rho - 1
        return p * concentration, (1 - p) * concentration

    def pmf(self, alpha, beta) -> np.ndarray:
        n = self.k - 1
        x = np.arange(n + 1, dtype=float)
        alpha, beta = np.asarray(alpha, float)[..., None], np.asarray(beta, float)[..., None]
        log_pmf = (
            special.gammaln(n + 1)
            - special.gammaln(x + 1)
            - special.gammaln(n - x + 1)
            + special.betaln(x + alpha, n - x + beta)
            - special.betaln(alpha, beta)
        )
        return np.exp(log_pmf)

    def from_moments(self, mean, var) -> np.ndarray:
        return self.pmf(*self.fit(mean, var))


def _logistic_cdf(z: np.ndarray) -> np.ndarray:
    # the logistic with the standard normal's SD: scale √3/π
    return special.expit(z * np.pi / np.sqrt(3.0))


LABEL_MODELS = {
    "quantised_normal": lambda k: QuantisedLatent(stats.norm.cdf, k),
    "quantised_logistic": lambda k: QuantisedLatent(_logistic_cdf, k),
    "beta_binomial": BetaBinomial,
}


def label_model(name: str, k: int = 5):
    """The label model ``name`` over ``k`` rating categories."""
    if name not in LABEL_MODELS:
        raise ConfigError(f"unknown label model '{name}'; known: {sorted(LABEL_MODELS)}")
    return LABEL_MODELS[name](k)


def from_mos(mos, sd: float | np.ndarray, name: str, k: int = 5) -> np.ndarray:
    """``(N, K)`` distributions for MOS on [0, 1] (mean rating ``1 + (K − 1)·mos``) with rating
    SD ``sd`` on the 1..K scale, by the label model ``name``."""
    mean = 1 + (k - 1) * np.clip(np.asarray(mos, float), 0, 1)
    var = np.broadcast_to(np.asarray(sd, float) ** 2, mean.shape)
    return label_model(name, k).from_moments(mean, var)
