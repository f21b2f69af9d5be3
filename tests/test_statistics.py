"""Comparison statistics against values worked out by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_crystal.evaluation import (
    MCNEMAR_EXACT_BELOW,
    compare,
    mcnemar,
    paired_difference_ci,
    wald_difference_ci,
)

Z95 = 1.959963984540054  # Phi^-1(0.975)


def test_wald_by_hand():
    # a = 80/100, b = 70/100: se = sqrt(.8*.2/100 + .7*.3/100) = 0.0608276
    d, low, high = wald_difference_ci(80, 100, 70, 100)
    assert d == pytest.approx(0.10)
    assert low == pytest.approx(-0.0192200, abs=1e-6)
    assert high == pytest.approx(0.2192200, abs=1e-6)


def test_wald_other_level_and_sign():
    # 90% level: z = 1.644854; b minus a flips the sign and mirrors the interval
    d, low, high = wald_difference_ci(70, 100, 80, 100, level=0.90)
    assert d == pytest.approx(-0.10)
    assert high - d == pytest.approx(1.6448536 * 0.0608276, abs=1e-6)
    assert (low, high) == pytest.approx((-0.10 - 0.1000530, -0.10 + 0.1000530), abs=1e-6)


def test_wald_unequal_sizes():
    # 30/50 vs 45/100: se = sqrt(.6*.4/50 + .45*.55/100) = sqrt(.0048 + .002475) = 0.0852936
    d, low, high = wald_difference_ci(30, 50, 45, 100)
    assert d == pytest.approx(0.15)
    assert (low, high) == pytest.approx((0.15 - Z95 * 0.0852936, 0.15 + Z95 * 0.0852936), abs=1e-6)


@pytest.mark.parametrize("args", [(5, 0, 1, 2), (3, 2, 1, 2), (-1, 2, 1, 2), (1, 2, 1, 2, 1.0)])
def test_wald_rejects_bad_input(args):
    with pytest.raises(ValueError):
        wald_difference_ci(*args)


def test_paired_by_hand():
    # b = 15, c = 5, n = 100: d = 0.10, se = sqrt(20 - 100/100)/100 = sqrt(19)/100 = 0.0435890
    d, low, high = paired_difference_ci(15, 5, 100)
    assert d == pytest.approx(0.10)
    assert (low, high) == pytest.approx((0.0145672, 0.1854328), abs=1e-6)


def test_paired_rejects_bad_input():
    with pytest.raises(ValueError):
        paired_difference_ci(60, 50, 100)
    with pytest.raises(ValueError):
        paired_difference_ci(-1, 0, 10)


def test_mcnemar_exact_by_hand():
    # X ~ Bin(13, 1/2): P(X <= 3) = (1 + 13 + 78 + 286) / 8192 = 378/8192; p = 2 * that
    stat, p, method = mcnemar(3, 10)
    assert method == "exact binomial"
    assert stat == 3
    assert p == pytest.approx(756 / 8192, rel=1e-12)  # 0.0922852
    assert mcnemar(10, 3) == (stat, p, method)


def test_mcnemar_chi_square_by_hand():
    # (|30 - 15| - 1)^2 / 45 = 196/45 = 4.35556; p = erfc(sqrt(x/2)) for 1 dof = 0.036888
    stat, p, method = mcnemar(30, 15)
    assert method.startswith("chi-square")
    assert stat == pytest.approx(196 / 45)
    assert p == pytest.approx(math.erfc(math.sqrt(196 / 45 / 2)), rel=1e-9)
    assert p == pytest.approx(0.036888, abs=1e-6)


def test_mcnemar_regime_boundary():
    # 24 discordant pairs: exact; 25: chi-square
    assert MCNEMAR_EXACT_BELOW == 25
    assert mcnemar(12, 12)[2] == "exact binomial"
    assert mcnemar(12, 12)[1] == 1.0  # capped at 1
    stat, p, method = mcnemar(13, 12)
    assert method.startswith("chi-square")
    assert stat == 0.0 and p == pytest.approx(1.0)
    assert mcnemar(0, 0) == (0.0, 1.0, "exact binomial")
    # b = 0, c = 6: p = 2 / 2^6
    assert mcnemar(0, 6)[1] == pytest.approx(2 / 64)


def test_compare_by_hand():
    # 10 patches; A right on 8, B right on 7; b (A right, B wrong) = 2, c = 1
    truth = ["dcis"] * 5 + ["indc"] * 5
    a = ["dcis"] * 5 + ["indc"] * 3 + ["dcis", "dcis"]
    b = ["dcis", "dcis", "nneo", "nneo", "dcis"] + ["indc"] * 4 + ["dcis"]
    c = compare(truth, a, b, names=("with", "without"), test_set="eval")
    assert (c.n, c.correct_a, c.correct_b) == (10, 8, 7)
    assert (c.b, c.c, c.both_correct, c.both_wrong) == (2, 1, 6, 1)
    assert c.difference == pytest.approx(0.1)
    se = math.sqrt(0.8 * 0.2 / 10 + 0.7 * 0.3 / 10)
    assert c.wald_ci == pytest.approx((0.1 - Z95 * se, 0.1 + Z95 * se))
    se_p = math.sqrt(3 - 1 / 10) / 10
    assert c.paired_ci == pytest.approx((0.1 - Z95 * se_p, 0.1 + Z95 * se_p))
    # exact: 2 * P(Bin(3, .5) <= 1) = 2 * 4/8 = 1
    assert (c.mcnemar_statistic, c.mcnemar_p, c.mcnemar_method) == (1.0, 1.0, "exact binomial")
    assert c.report_a.accuracy == 0.8 and c.report_b.name == "without"


def test_compare_rejects_length_mismatch():
    with pytest.raises(ValueError):
        compare(["a", "b"], ["a"], ["a", "b"])


@given(
    st.integers(1, 500),
    st.integers(1, 500),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0.5, 0.99),
)
def test_wald_interval_properties(n_a, n_b, fa, fb, level):
    ca, cb = round(fa * n_a), round(fb * n_b)
    d, low, high = wald_difference_ci(ca, n_a, cb, n_b, level)
    assert low <= d <= high
    assert d == pytest.approx(ca / n_a - cb / n_b)
    assert high - d == pytest.approx(d - low)
    d2, low2, high2 = wald_difference_ci(cb, n_b, ca, n_a, level)
    assert (d2, low2, high2) == pytest.approx((-d, -high, -low))


@given(st.integers(0, 200), st.integers(0, 200))
def test_mcnemar_properties(b, c):
    stat, p, method = mcnemar(b, c)
    assert 0.0 <= p <= 1.0
    assert mcnemar(c, b) == (stat, p, method)
    assert method == ("exact binomial" if b + c < 25 else "chi-square, continuity-corrected")
