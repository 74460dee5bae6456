"""Paired statistics of two evaluations of one suite, case by case (scipy and numpy only;
no distribution is written by hand here).

Each case contributes a pair (baseline, candidate): pass/fail (bool), or a pass rate in
[0, 1] when every case was answered `samples` times.

- `mcnemar`: the exact McNemar test, i.e. the binomial test (scipy.stats.binomtest, p = 1/2)
  on the discordant pairs: b cases the baseline passed and the candidate failed, c the other
  way round. `p_drop` is one-sided (the candidate is worse: b large), `p_gain` the other
  side, `p_two_sided` both. With pass rates, b and c are the sums of the positive and the
  negative parts of the per-case differences (for bool vectors exactly the counts), rounded
  to whole cases for the test: k samples of one case are not k independent cases.
- `paired_bootstrap`: a seeded percentile bootstrap (scipy.stats.bootstrap, paired=True) of
  the accuracy difference candidate - baseline; cases are resampled with their pairs.
- `detectable_drop`: the smallest accuracy drop a suite of n cases can show as significant
  at alpha with the one-sided exact McNemar test, given how many cases improved at the same
  time (the churn): with no improvements it is the best case; every improvement raises it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
_BATCH_CELLS = 2_000_000  # resampled cases held at once: a large suite is bootstrapped in batches


def as_pairs(base, cand) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long float vectors in [0, 1] (bools become 0/1)."""
    b = np.asarray(base, dtype=float).ravel()
    c = np.asarray(cand, dtype=float).ravel()
    if b.shape != c.shape:
        raise ValueError(f"paired vectors differ in length: {b.size} vs {c.size}")
    if b.size and (np.any((b < 0) | (b > 1)) or np.any((c < 0) | (c > 1)) or np.isnan(b).any() or np.isnan(c).any()):
        raise ValueError("pass values must lie in [0, 1]")
    return b, c


def _binom_p(k: int, n: int, alternative: str) -> float:
    return float(stats.binomtest(k, n, 0.5, alternative=alternative).pvalue) if n else 1.0


def mcnemar(base, cand) -> dict:
    """The exact McNemar test of candidate vs baseline on paired per-case results."""
    b_vec, c_vec = as_pairs(base, cand)
    diff = c_vec - b_vec
    b_exact, c_exact = float(np.sum(np.clip(-diff, 0, None))), float(np.sum(np.clip(diff, 0, None)))
    b, c = int(round(b_exact)), int(round(c_exact))
    n_disc = b + c
    return {"n": int(b_vec.size), "b": b, "c": c, "b_exact": round(b_exact, 6), "c_exact": round(c_exact, 6),
            "discordant": n_disc,
            "p_two_sided": _binom_p(b, n_disc, "two-sided"),
            "p_drop": _binom_p(b, n_disc, "greater"),   # many b (lost cases): the candidate is worse
            "p_gain": _binom_p(c, n_disc, "greater")}   # many c (won cases): the candidate is better


def paired_bootstrap(base, cand, *, resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                     seed: int = 0) -> dict:
    """Seeded percentile bootstrap interval of mean(cand) - mean(base), pairs resampled together."""
    b_vec, c_vec = as_pairs(base, cand)
    if not b_vec.size:
        raise ValueError("a paired bootstrap needs at least one case")
    delta = float(np.mean(c_vec) - np.mean(b_vec))
    diff = c_vec - b_vec
    if np.all(diff == diff[0]):  # every resample gives the same difference: the interval is that point
        low = high = delta
    else:
        res = stats.bootstrap((b_vec, c_vec), lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
                              paired=True, vectorized=True, n_resamples=resamples, confidence_level=confidence,
                              method="percentile", rng=np.random.default_rng(seed),
                              batch=max(1, min(resamples, _BATCH_CELLS // b_vec.size)))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"delta": round(delta, 6), "low": round(low, 6), "high": round(high, 6), "confidence": confidence,
            "resamples": resamples, "seed": seed}


def detectable_drop(n: int, alpha: float, improvements: int = 0) -> float | None:
    """The smallest accuracy drop (as a share of n) that the one-sided exact McNemar test
    calls significant at `alpha` (p <= alpha) when `improvements` cases moved the other way:
    the least b with P(X >= b | X ~ Binomial(b + improvements, 1/2)) <= alpha gives
    (b - improvements) / n. None: no outcome on n cases can be significant."""
    if n <= 0:
        return None
    c = max(0, min(int(improvements), n))
    b = np.arange(1, n - c + 1)
    if not b.size:
        return None
    p = stats.binom.sf(b - 1, b + c, 0.5)
    hits = np.nonzero(p <= alpha)[0]
    return None if not hits.size else round(float((b[hits[0]] - c) / n), 6)


def detectable_table(sizes, alpha: float = 0.05, churn=(0.0, 0.05, 0.1)) -> list[dict]:
    """For docs and reports: the detectable drop per suite size, for a share of cases that
    improve at the same time (the noise of retraining)."""
    return [{"n": n, "alpha": alpha,
             "drops": {share: detectable_drop(n, alpha, round(share * n)) for share in churn}} for n in sizes]
