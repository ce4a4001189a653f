"""Known truth: in-control ARL0 matches the design (~370) within 10 %, and a 1 sigma shift
is found in ~10 readings (research/metrology.md §4.2 Markov-chain figures)."""

from __future__ import annotations

from metrotrace.server.metrology import simulate


def test_arl0_matches_design_within_ten_percent():
    # 1.2e6 charted readings -> ~3,200 signals per chart: the estimate's standard error is
    # ~1.8 %, so +-10 % is more than 5 standard errors.
    got = simulate.arl0(2000, 600, seed=11)
    assert 0.9 * 369 <= got["cusum"] <= 1.1 * 369
    assert 0.9 * 371 <= got["ewma"] <= 1.1 * 371


def test_one_sigma_shift_is_found_in_about_ten_readings():
    got = simulate.delay(2000, 1.0, seed=12, zero_state=True)
    assert 8.9 <= got["cusum"] <= 10.9  # design 9.92
    assert 8.8 <= got["ewma"] <= 10.8  # design 9.8
    assert got["cusum_missed"] == 0 and got["ewma_missed"] == 0
