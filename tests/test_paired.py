"""The gate's paired statistics on constructed pass/fail vectors: exact McNemar p-values by
hand and against scipy's binomial distribution, the paired-bootstrap interval against an
independent resampling and the normal approximation, and the smallest detectable drop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cl_toolkit.evaluation.paired import (
    detectable_drop,
    detectable_table,
    mcnemar,
    paired_bootstrap,
)


def vectors(b: int, c: int, both: int = 10, neither: int = 5):
    """Pass/fail vectors with b cases lost (base pass, cand fail) and c won."""
    base = [True] * b + [False] * c + [True] * both + [False] * neither
    cand = [False] * b + [True] * c + [True] * both + [False] * neither
    return base, cand


def test_mcnemar_hand_computed_cases():
    m = mcnemar(*vectors(0, 6))
    assert (m["n"], m["b"], m["c"], m["discordant"]) == (21, 0, 6, 6)
    assert m["p_two_sided"] == pytest.approx(2 * 0.5 ** 6, abs=1e-12)
    assert m["p_gain"] == pytest.approx(0.5 ** 6, abs=1e-12)
    assert m["p_drop"] == pytest.approx(1.0)
    drop = mcnemar(*vectors(5, 0))
    assert drop["p_drop"] == pytest.approx(0.5 ** 5, abs=1e-12) and drop["p_gain"] == pytest.approx(1.0)
    # b=3, c=1 of 4 discordant: two-sided P(X<=1) + P(X>=3) = (1+4+4+1)/16; one-sided P(X>=3) = 5/16
    m = mcnemar(*vectors(3, 1))
    assert m["p_two_sided"] == pytest.approx(10 / 16, abs=1e-12)
    assert m["p_drop"] == pytest.approx(5 / 16, abs=1e-12)
    assert m["p_gain"] == pytest.approx(15 / 16, abs=1e-12)


def test_no_discordant_cases_is_no_evidence():
    m = mcnemar([True, False, True], [True, False, True])
    assert (m["b"], m["c"], m["p_two_sided"], m["p_drop"], m["p_gain"]) == (0, 0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_scipys_binomial_distribution(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    base = rng.random(n) < rng.uniform(0.2, 0.9)
    cand = np.where(rng.random(n) < 0.3, ~base, base)
    b, c = int(np.sum(base & ~cand)), int(np.sum(~base & cand))
    m = mcnemar(base, cand)
    assert (m["b"], m["c"]) == (b, c)
    # the exact McNemar two-sided p: twice the smaller tail of Binomial(b + c, 1/2), capped at 1
    ref_two = min(1.0, 2 * stats.binom.cdf(min(b, c), b + c, 0.5))
    assert m["p_two_sided"] == pytest.approx(ref_two, rel=1e-9)
    assert m["p_drop"] == pytest.approx(stats.binom.sf(b - 1, b + c, 0.5), rel=1e-9)
    assert m["p_gain"] == pytest.approx(stats.binom.sf(c - 1, b + c, 0.5), rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_statsmodels_exact_mcnemar(seed):
    """statsmodels' exact McNemar test on the 2x2 table of the same pairs."""
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(10, 300))
    base = rng.random(n) < 0.6
    cand = np.where(rng.random(n) < rng.uniform(0.05, 0.4), ~base, base)
    table = [[int(np.sum(base & cand)), int(np.sum(base & ~cand))],
             [int(np.sum(~base & cand)), int(np.sum(~base & ~cand))]]
    assert mcnemar(base, cand)["p_two_sided"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue, rel=1e-9)


def test_pass_rates_count_partial_discordance():
    # four cases the baseline always passes and the candidate passes one time in four
    m = mcnemar([1.0] * 4 + [0.0] * 2, [0.25] * 4 + [0.0] * 2)
    assert (m["b_exact"], m["c_exact"], m["b"], m["c"]) == (3.0, 0.0, 3, 0)
    assert m["p_drop"] == pytest.approx(0.5 ** 3)
    assert mcnemar([True, False], [False, True]) == mcnemar([1.0, 0.0], [0.0, 1.0])


def test_vectors_must_pair_up():
    with pytest.raises(ValueError, match="length"):
        mcnemar([True, True], [True])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paired_bootstrap([1.5], [1.0])


def test_bootstrap_of_identical_or_constant_differences_is_a_point():
    same = [True, False, True, True, False] * 8
    assert paired_bootstrap(same, same) == {"delta": 0.0, "low": 0.0, "high": 0.0, "confidence": 0.95,
                                            "resamples": 10000, "seed": 0}
    shifted = paired_bootstrap([0.6] * 20, [0.5] * 20)
    assert (shifted["delta"], shifted["low"], shifted["high"]) == (-0.1, -0.1, -0.1)


def test_bootstrap_is_seeded_and_brackets_the_delta():
    base, cand = vectors(4, 12, both=30, neither=14)
    one = paired_bootstrap(base, cand, resamples=4000, seed=3)
    assert one == paired_bootstrap(base, cand, resamples=4000, seed=3)
    assert one["delta"] == pytest.approx(8 / 60, abs=1e-6)
    assert one["low"] < one["delta"] < one["high"]
    wider = paired_bootstrap(base, cand, resamples=4000, seed=3, confidence=0.99)
    assert wider["low"] < one["low"] and wider["high"] > one["high"]


def test_bootstrap_matches_an_independent_resampling():
    rng = np.random.default_rng(11)
    base = rng.random(80) < 0.5
    cand = np.where(rng.random(80) < 0.25, ~base, base)
    got = paired_bootstrap(base, cand, resamples=20000, seed=0)
    # the reference: resample case indices, take the 2.5% and 97.5% quantiles of the mean difference
    d = cand.astype(float) - base.astype(float)
    idx = np.random.default_rng(99).integers(0, d.size, size=(20000, d.size))
    ref = np.quantile(d[idx].mean(axis=1), [0.025, 0.975])
    assert got["low"] == pytest.approx(ref[0], abs=0.02)
    assert got["high"] == pytest.approx(ref[1], abs=0.02)


def test_bootstrap_agrees_with_the_normal_approximation_on_a_large_suite():
    rng = np.random.default_rng(5)
    n = 3000
    base = rng.random(n) < 0.6
    cand = np.where(rng.random(n) < 0.2, ~base, base)
    d = cand.astype(float) - base.astype(float)
    half = stats.norm.ppf(0.975) * d.std(ddof=1) / math.sqrt(n)
    got = paired_bootstrap(base, cand, resamples=5000, seed=1)
    assert got["low"] == pytest.approx(d.mean() - half, abs=0.004)
    assert got["high"] == pytest.approx(d.mean() + half, abs=0.004)


def test_detectable_drop_hand_computed():
    # with no improvements, the best case is every discordant pair lost: p = 0.5^b;
    # 0.5^5 = 0.031 <= 0.05 < 0.5^4, so 5 lost cases; at alpha 0.01: 0.5^7 = 0.0078 < 0.01 < 0.5^6
    assert detectable_drop(60, 0.05) == pytest.approx(5 / 60, abs=1e-6)
    assert detectable_drop(60, 0.01) == pytest.approx(7 / 60, abs=1e-6)
    assert detectable_drop(500, 0.05) == pytest.approx(5 / 500, abs=1e-6)
    assert detectable_drop(4, 0.05) is None  # 4 cases can never reach p <= 0.05
    assert detectable_drop(0, 0.05) is None


@pytest.mark.parametrize(("n", "c"), [(60, 6), (48, 3), (200, 20)])
def test_detectable_drop_with_churn_matches_scipy_binomtest(n, c):
    ref = next(b for b in range(1, n - c + 1)
               if stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue <= 0.05)
    assert detectable_drop(n, 0.05, c) == pytest.approx((ref - c) / n, abs=1e-6)
    assert detectable_drop(n, 0.05, c) > detectable_drop(n, 0.05)  # churn hides drops


def test_detectable_table_shrinks_with_the_suite():
    rows = detectable_table([30, 60, 120, 480])
    best = [r["drops"][0.0] for r in rows]
    assert best == sorted(best, reverse=True) and best[1] == pytest.approx(5 / 60, abs=1e-6)
    assert all(r["drops"][0.1] > r["drops"][0.0] for r in rows)
