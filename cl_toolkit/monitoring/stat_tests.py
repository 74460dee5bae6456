"""The statistics behind drift and A/B tests (numpy, scipy and the standard library), checked
against independent computations in the tests.

PSI (population stability index) = sum over bins of (c - r) * ln(c / r), where r and c
are the reference and current shares of a bin.
- Numeric features: the bins are the reference window's quantiles. With B bins the inner
  edges are the reference quantiles at 1/B, ..., (B-1)/B (linear interpolation, numpy's
  default); repeated edges (ties) are merged, so a feature with few distinct values gets
  fewer bins. Bins are right-closed: (-inf, e1], (e1, e2], ..., (e_last, +inf), so
  current values outside the reference range land in the outer bins.
- Categorical features: one bin per category seen in either window.
- An empty bin's share is raised to `epsilon` (default 1e-4) so the log stays finite;
  shares are not renormalised afterwards.

Kolmogorov-Smirnov (two-sample, two-sided): D = max |F1(x) - F2(x)| over all observed x,
from scipy.stats.ks_2samp. The p-value is scipy's exact one when n1 * n2 <= EXACT_MAX_CELLS
(like scipy it assumes no ties), else Kolmogorov's limiting distribution
Q(sqrt(n1 n2 / (n1 + n2)) * D) (scipy.stats.kstwobign).

Two proportions: the pooled z-test, the unpooled (Wald) confidence interval of the
difference, and the per-arm sample size for a given power (normal approximation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import stats

EXACT_MAX_CELLS = 100_000
_NORMAL = NormalDist()


# --- PSI -------------------------------------------------------------------------------
def quantile_edges(reference, bins: int) -> np.ndarray:
    """The inner bin edges: reference quantiles at 1/bins .. (bins-1)/bins, ties merged."""
    ref = np.asarray(reference, dtype=float)
    return np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def bin_shares(values, edges: np.ndarray) -> np.ndarray:
    """Share of values in each right-closed bin (-inf, e1], ..., (e_last, inf)."""
    vals = np.asarray(values, dtype=float)
    counts = np.bincount(np.searchsorted(edges, vals, side="left"), minlength=len(edges) + 1)
    return counts / max(len(vals), 1)


def psi_from_shares(reference_shares, current_shares, epsilon: float = 1e-4) -> float:
    """sum((c - r) * ln(c / r)) with shares below epsilon raised to epsilon."""
    r = np.maximum(np.asarray(reference_shares, dtype=float), epsilon)
    c = np.maximum(np.asarray(current_shares, dtype=float), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_numeric(reference, current, bins: int = 10, epsilon: float = 1e-4) -> float:
    """PSI of a numeric feature over quantile bins of the reference."""
    edges = quantile_edges(reference, bins)
    return psi_from_shares(bin_shares(reference, edges), bin_shares(current, edges), epsilon)


def category_shares(reference, current) -> tuple[list, np.ndarray, np.ndarray]:
    """(categories, reference shares, current shares) over every category seen."""
    cats = sorted(set(reference) | set(current), key=str)

    def shares(values) -> np.ndarray:
        counts = {c: 0 for c in cats}
        for v in values:
            counts[v] += 1
        return np.array([counts[c] for c in cats], dtype=float) / max(len(values), 1)

    return cats, shares(reference), shares(current)


def psi_categorical(reference, current, epsilon: float = 1e-4) -> float:
    """PSI of a categorical feature, one bin per category."""
    _, r, c = category_shares(reference, current)
    return psi_from_shares(r, c, epsilon)


# --- Kolmogorov-Smirnov ------------------------------------------------------------------
@dataclass(frozen=True)
class KSResult:
    statistic: float
    p_value: float
    method: str  # exact | asymptotic


def kolmogorov_sf(x: float) -> float:
    """Q(x) = P(K > x) for Kolmogorov's limiting distribution."""
    return float(stats.kstwobign.sf(x)) if x > 0 else 1.0


def ks_2samp(sample1, sample2) -> KSResult:
    """Two-sample two-sided Kolmogorov-Smirnov statistic and p-value."""
    a = np.asarray(sample1, dtype=float)
    b = np.asarray(sample2, dtype=float)
    m, n = len(a), len(b)
    if not m or not n:
        raise ValueError("both samples need at least one value")
    if m * n <= EXACT_MAX_CELLS:
        res = stats.ks_2samp(a, b, alternative="two-sided", method="exact")
        return KSResult(float(res.statistic), float(res.pvalue), "exact")
    d = float(stats.ks_2samp(a, b, alternative="two-sided", method="asymp").statistic)
    return KSResult(d, kolmogorov_sf(math.sqrt(m * n / (m + n)) * d), "asymptotic")


# --- two proportions ---------------------------------------------------------------------
@dataclass(frozen=True)
class ProportionTest:
    """Arm 2 minus arm 1: difference, pooled z, two-sided p, (1 - alpha) Wald interval."""

    rate1: float
    rate2: float
    diff: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float


def two_proportion_ztest(x1: int, n1: int, x2: int, n2: int, alpha: float = 0.05) -> ProportionTest:
    """The pooled two-proportion z-test of p2 - p1 and its unpooled confidence interval."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both arms need at least one observation")
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p2 - p1) / se if se > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    half = _NORMAL.inv_cdf(1 - alpha / 2) * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return ProportionTest(p1, p2, p2 - p1, z, p_value, p2 - p1 - half, p2 - p1 + half)


def sample_size_per_arm(p1: float, diff: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per arm for a two-sided test at alpha to detect p1 -> p1 + diff with
    the given power (normal approximation, pooled variance under H0)."""
    p2 = min(max(p1 + diff, 1e-9), 1 - 1e-9)
    p1 = min(max(p1, 1e-9), 1 - 1e-9)
    if p2 == p1:
        raise ValueError("the difference to detect must not be 0")
    pooled = (p1 + p2) / 2
    std_null = math.sqrt(2 * pooled * (1 - pooled))
    std_alt = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    z_alpha, z_power = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    return math.ceil(((z_alpha * std_null + z_power * std_alt) / (p2 - p1)) ** 2)
