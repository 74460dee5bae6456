"""PSI, Kolmogorov-Smirnov and the two-proportion z-test against independent computations:
scipy, statsmodels, the standard library, and hand-worked numbers, on fixed data."""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter

import numpy as np
import pytest
from scipy import special
from scipy import stats as sp

from cl_toolkit.monitoring import stat_tests as stats
from cl_toolkit.monitoring.config import Drift
from cl_toolkit.monitoring.drift import concept_drift, drift_report, severity

RNG = np.random.default_rng(20250401)
REF = RNG.normal(300, 40, 2000)
CUR = RNG.normal(340, 55, 1500)


# --- PSI ---------------------------------------------------------------------------------
def _psi_reference(ref, cur, bins=10, eps=1e-4) -> float:
    """Independent PSI: stdlib quantiles, bisect into right-closed bins, scipy rel_entr."""
    edges = sorted(set(statistics.quantiles(list(ref), n=bins, method="inclusive")))
    def shares(values):
        counts = Counter(bisect.bisect_left(edges, v) for v in values)
        return np.array([counts.get(i, 0) / len(values) for i in range(len(edges) + 1)])
    r, c = np.maximum(shares(ref), eps), np.maximum(shares(cur), eps)
    return float(np.sum(special.rel_entr(c, r) + special.rel_entr(r, c)))


def test_psi_numeric_matches_an_independent_computation():
    got = stats.psi_numeric(REF, CUR, bins=10)
    assert got == pytest.approx(_psi_reference(REF, CUR), rel=1e-12)
    assert 0.25 < got < 2  # a shift of one standard deviation is significant drift
    assert stats.psi_numeric(REF, REF) == pytest.approx(0.0, abs=1e-12)
    assert stats.psi_numeric(REF, CUR, bins=5) == pytest.approx(_psi_reference(REF, CUR, bins=5), rel=1e-12)


def test_psi_by_hand_and_the_epsilon_for_empty_bins():
    by_hand = sum((c - 0.25) * math.log(c / 0.25) for c in (0.1, 0.2, 0.3, 0.4))
    assert stats.psi_from_shares([0.25] * 4, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(by_hand, rel=1e-12)
    eps = 1e-4  # everything in the first bin: the three empty bins count as eps
    expected = (1 - 0.25) * math.log(1 / 0.25) + 3 * (eps - 0.25) * math.log(eps / 0.25)
    assert stats.psi_from_shares([0.25] * 4, [1, 0, 0, 0], eps) == pytest.approx(expected, rel=1e-12)


def test_quantile_bins_are_right_closed_and_ties_merge():
    ref = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    edges = stats.quantile_edges(ref, 5)
    assert list(edges) == pytest.approx([2.8, 4.6, 6.4, 8.2])  # numpy's linear quantiles
    assert list(stats.bin_shares([2.8, 2.81, -100, 100], edges)) == [0.5, 0.25, 0, 0, 0.25]
    assert list(stats.quantile_edges([3, 3, 3, 3, 7], 4)) == [3.0]  # ties: two bins left
    assert stats.psi_numeric([3, 3, 3, 3, 7], [3, 3, 3, 3, 7]) == 0.0


def test_psi_categorical_matches_an_independent_computation():
    ref = ["hose"] * 50 + ["ems"] * 30 + ["hazmat"] * 20
    cur = ["hose"] * 30 + ["ems"] * 30 + ["rescue"] * 40  # hazmat vanished, rescue is new
    cats = sorted(set(ref) | set(cur))
    r = np.maximum([Counter(ref)[c] / len(ref) for c in cats], 1e-4)
    c = np.maximum([Counter(cur)[k] / len(cur) for k in cats], 1e-4)
    expected = float(np.sum(special.rel_entr(c, r) + special.rel_entr(r, c)))
    assert stats.psi_categorical(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_severity_bands_at_their_edges():
    cfg = Drift()
    assert [severity(x, cfg) for x in (0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "none", "moderate", "moderate", "significant", "significant"]


# --- Kolmogorov-Smirnov --------------------------------------------------------------------
@pytest.mark.parametrize("m, n, shift, integers", [
    (1, 1, 0.0, False), (5, 7, 0.5, False), (40, 60, 0.3, False), (80, 90, 0.0, False),
    (300, 333, 0.3, False), (50, 70, 1.0, True)])
def test_ks_exact_matches_scipy(m, n, shift, integers):
    rng = np.random.default_rng(m * 1000 + n)
    a, b = rng.normal(0, 1, m), rng.normal(shift, 1, n)
    if integers:  # ties within and across the samples
        a, b = np.round(a * 2), np.round(b * 2)
    got, want = stats.ks_2samp(a, b), sp.ks_2samp(a, b, method="exact")
    assert got.method == "exact"
    assert got.statistic == pytest.approx(want.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-8, abs=1e-14)


def test_ks_asymptotic_matches_kolmogorovs_distribution():
    got = stats.ks_2samp(REF, CUR)
    assert got.method == "asymptotic"
    assert got.statistic == pytest.approx(sp.ks_2samp(REF, CUR).statistic, abs=1e-12)
    en = len(REF) * len(CUR) / (len(REF) + len(CUR))
    assert got.p_value == pytest.approx(sp.kstwobign.sf(math.sqrt(en) * got.statistic), rel=1e-9, abs=1e-300)
    near = RNG.normal(300.0, 40, 1500) + 4  # a small shift: a p-value that is not ~0
    got = stats.ks_2samp(REF, near)
    assert 1e-4 < got.p_value < 0.9
    assert got.p_value == pytest.approx(sp.ks_2samp(REF, near, method="asymp").pvalue, abs=0.01)


@pytest.mark.parametrize("x", [0.05, 0.3, 0.8, 1.1799, 1.18, 1.5, 2.5, 5.0])
def test_kolmogorov_sf_matches_scipy(x):
    assert stats.kolmogorov_sf(x) == pytest.approx(sp.kstwobign.sf(x), rel=1e-10, abs=1e-15)


# --- two proportions ---------------------------------------------------------------------
@pytest.mark.parametrize("x1, n1, x2, n2", [(800, 1000, 860, 1000), (450, 1200, 430, 1100),
                                            (90, 100, 70, 100), (1, 40, 5, 40)])
def test_two_proportion_ztest_matches_statsmodels(x1, n1, x2, n2):
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    got = stats.two_proportion_ztest(x1, n1, x2, n2, alpha=0.05)
    z, p = proportion.proportions_ztest([x2, x1], [n2, n1])  # pooled, two-sided
    low, high = proportion.confint_proportions_2indep(x2, n2, x1, n1, method="wald", compare="diff", alpha=0.05)
    assert (got.z, got.p_value) == (pytest.approx(z, rel=1e-10), pytest.approx(p, rel=1e-9))
    assert (got.ci_low, got.ci_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))


def test_two_proportion_ztest_by_hand_and_degenerate():
    got = stats.two_proportion_ztest(800, 1000, 860, 1000)
    pooled = 1660 / 2000
    z = 0.06 / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert got.z == pytest.approx(z) and got.p_value == pytest.approx(2 * sp.norm.sf(z))
    same = stats.two_proportion_ztest(10, 10, 20, 20)  # no variance at all
    assert (same.z, same.p_value) == (0.0, 1.0)


@pytest.mark.parametrize("p1, diff", [(0.8, 0.02), (0.5, 0.05), (0.3, -0.03)])
def test_sample_size_matches_statsmodels(p1, diff):
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    want = proportion.samplesize_proportions_2indep_onetail(diff, p1, 0.8, alpha=0.05)
    assert stats.sample_size_per_arm(p1, diff, 0.05, 0.8) == math.ceil(want)


# --- the drift report --------------------------------------------------------------------
def test_drift_report_flags_only_what_moved():
    def columns(latency, domains, ratings):
        return {"prompt_length": list(REF), "response_length": list(REF), "latency_ms": list(latency),
                "confidence": [], "quality_score": list(REF), "domain": domains, "rating": ratings}

    ref = columns(REF, ["hose"] * 80 + ["ems"] * 20, [5] * 90 + [1] * 10)
    cur = columns(CUR, ["hose"] * 40 + ["ems"] * 60, [5] * 70 + [1] * 30)
    report = drift_report(ref, cur, Drift())
    assert report["numeric"]["latency_ms"]["severity"] == "significant"
    assert report["numeric"]["latency_ms"]["ks_differs"] is True
    assert report["numeric"]["prompt_length"]["psi"] == pytest.approx(0.0, abs=1e-12)
    assert report["numeric"]["prompt_length"]["severity"] == "none"
    assert report["numeric"]["confidence"]["severity"] == "no data"
    assert report["categorical"]["domain"]["severity"] == "significant"
    assert sorted(report["drifted"]) == ["domain", "latency_ms"] and report["severity"] == "significant"
    assert report["concept"]["drop"] == pytest.approx(0.2) and report["concept"]["drift"] is True


def test_concept_drift_threshold_is_inclusive():
    at = concept_drift([5] * 90 + [1] * 10, [5] * 85 + [1] * 15, Drift(concept_drop=0.05))
    under = concept_drift([5] * 90 + [1] * 10, [5] * 86 + [1] * 14, Drift(concept_drop=0.05))
    assert (at["drop"], at["drift"]) == (0.05, True) and under["drift"] is False
