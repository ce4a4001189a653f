"""The drift kernel equals its naive twin, and batches split anywhere equal one batch."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrotrace.server.metrology import InputError, kernels, tables
from metrotrace.server.metrology import state as S
from metrotrace.server.metrology.mpe import Instrument
from metrotrace.server.metrology.normalise import RAW_NONE
from metrotrace.server.metrology.tests import naive

TABLES = tables.load()
KINDS = [  # (instrument, loads the checks use)
    (Instrument("scale-III", "oiml-r76", "III", "g", 5), [0, 100, 2500, 2505, 10000, 15000]),
    (Instrument("scale-II", "oiml-r76", "II", "mg", 100), [20_000, 500_000, 600_000]),
    (Instrument("pump-0.5", "oiml-r117", "0.5", "mL", 10, mmq=2000), [50, 1500, 5000, 20000]),
    (Instrument("pump-ca", "ca-mc-dispenser", "retail", "mL", 10), [2000, 20000, 50000]),
]
PARAMS = kernels.Params(baseline=5, trend_window=7.0, confirm_within=4)
DAY = 86_400_000


def make_fleet(seed: int, counts: list[int], with_raw: bool):
    """Random readings for len(counts) instruments -> (instruments, per-instrument rows)."""
    rng = np.random.default_rng(seed)
    instruments, rows = [], []
    for i, n in enumerate(counts):
        inst, loads = KINDS[int(rng.integers(len(KINDS)))]
        instruments.append(Instrument(f"{inst.id}-{i}", inst.table, inst.accuracy_class,
                                      inst.unit, inst.e, inst.mmq))
        t = 1_700_000_000_000 + np.cumsum(rng.integers(0, 3 * DAY, n))
        ref = rng.choice(loads, n)
        drift = np.linspace(0, rng.normal(0, 4), n) * inst.e
        true = ref + drift + rng.normal(0, rng.uniform(0.1, 2), n) * inst.e
        ind = (np.round(true / inst.e) * inst.e).astype(np.int64)
        raw = np.round(5000 + 37.5 * true).astype(np.int64)
        if not with_raw:
            raw[:] = RAW_NONE
        elif rng.random() < 0.5:
            raw[rng.random(n) < 0.1] = RAW_NONE
        rows.append((t.astype(np.int64), ind, ref.astype(np.int64), raw))
    return instruments, rows


def to_checks(rows, lo=None, hi=None) -> kernels.Checks:
    parts = [tuple(c[(lo[i] if lo else 0):(hi[i] if hi else len(c))] for c in r)
             for i, r in enumerate(rows)]
    sizes = [len(p[0]) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cols = [np.concatenate([p[c] for p in parts]).astype(np.int64) for c in range(4)]
    return kernels.Checks(offsets, *cols)


def run_naive(instruments, rows, params):
    twins = []
    for inst, (t, ind, ref, raw) in zip(instruments, rows, strict=True):
        twin = naive.Instrument(inst, TABLES, baseline=params.baseline,
                                window=params.trend_window,
                                confirm_within=params.confirm_within)
        for row in zip(t.tolist(), ind.tolist(), ref.tolist(), raw.tolist(), strict=True):
            twin.add(*row)
        twins.append(twin)
    return twins


def first(times):
    return float(times[0]) if times else math.nan


def assert_matches_twin(values, twin):
    exact = {S.N_SEEN: twin.n_seen, S.N_OUT: len(twin.out), S.N_WARN: len(twin.warn),
             S.N_UNCOVERED: twin.uncovered, S.FIRST_OUT_T: first(twin.out),
             S.FIRST_WARN_T: first(twin.warn), S.N_CUSUM: len(twin.cusum_alarms),
             S.FIRST_CUSUM_T: first(twin.cusum_alarms), S.N_EWMA: len(twin.ewma_alarms),
             S.FIRST_EWMA_T: first(twin.ewma_alarms), S.RAW_MODE: twin.mode,
             S.N_SCORED: len(twin.trend_points), S.N_CONFIRMED: len(twin.confirmed),
             S.FIRST_CONFIRMED_T: first(twin.confirmed),
             S.LAST_SIGNAL_N: float(twin.signal_readings[-1]) if twin.signal_readings
             else math.nan}
    for col, want in exact.items():
        assert values[col] == want or (math.isnan(want) and math.isnan(values[col])), col
    sums, t0 = twin.trend_sums()
    close = {S.MU0: twin.mu0, S.SIGMA: twin.sigma, S.LAST_R: twin.last_r,
             S.MAX_ABS_R: twin.max_abs_r, S.CUSUM_HI: twin.cusum_hi,
             S.CUSUM_LO: twin.cusum_lo, S.EWMA: twin.ewma, S.T0: t0,
             **dict(zip((S.TW, S.TWT, S.TWR, S.TWTT, S.TWTR, S.TWRR, S.TW2), sums,
                        strict=True))}
    for col, want in close.items():
        np.testing.assert_allclose(values[col], want, rtol=1e-7, atol=1e-7, err_msg=str(col))


fleets = st.tuples(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 40), min_size=1,
                                                        max_size=4), st.booleans())


@given(fleets)
def test_kernel_equals_naive_twin(fleet):
    seed, counts, with_raw = fleet
    instruments, rows = make_fleet(seed, counts, with_raw)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    out = kernels.scan(spec, to_checks(rows), S.new(len(counts), PARAMS.baseline), PARAMS)
    for values, twin in zip(out.values, run_naive(instruments, rows, PARAMS), strict=True):
        assert_matches_twin(values, twin)


@given(fleets, st.lists(st.floats(0, 1), min_size=1, max_size=3))
def test_any_split_into_batches_gives_the_same_state(fleet, cuts):
    seed, counts, with_raw = fleet
    instruments, rows = make_fleet(seed, counts, with_raw)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    whole = kernels.scan(spec, to_checks(rows), S.new(len(counts), PARAMS.baseline), PARAMS)
    state = S.new(len(counts), PARAMS.baseline)
    bounds = [[0] * len(counts)]
    for c in sorted(cuts):
        bounds.append([max(b, int(c * n)) for b, n in zip(bounds[-1], counts, strict=True)])
    bounds.append(counts)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        state = kernels.scan(spec, to_checks(rows, lo, hi), state, PARAMS)
    np.testing.assert_array_equal(state.values, whole.values)  # NaN == NaN here


def test_known_sigma_skips_the_baseline_and_since_drops_old_readings():
    instruments, rows = make_fleet(7, [30, 30], False)
    since = np.array([0, int(rows[1][0][10])], dtype=np.int64)
    spec = kernels.FleetSpec.build(instruments, TABLES, since=since)
    out = kernels.scan(spec, to_checks(rows), S.new(2, 5, mu0=[0.0, 1.0], sigma=[2.0, np.nan]),
                       PARAMS)
    assert out.values[0, S.SIGMA] == 2.0
    assert out.values[0, S.N_SCORED] == 30 - out.values[0, S.N_UNCOVERED]  # no baseline
    assert out.values[1, S.N_SEEN] == 30 - np.searchsorted(rows[1][0], since[1])


def test_scan_leaves_the_given_state_alone_and_rejects_time_going_back():
    instruments, rows = make_fleet(3, [12], False)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    first_state = kernels.scan(spec, to_checks(rows), S.new(1, 5), PARAMS)
    before = first_state.values.copy()
    with pytest.raises(InputError, match=r"^t: readings of instrument 0 go back"):
        kernels.scan(spec, to_checks(rows), first_state, PARAMS)
    np.testing.assert_array_equal(first_state.values, before)


@pytest.mark.parametrize("column, value, message", [
    ("indication", np.zeros(3, dtype=np.float64), r"^indication: legal values .* float64"),
    ("reference", np.zeros(2, dtype=np.int64), r"^reference: expected 3 rows"),
    ("offsets", np.array([0, 2], dtype=np.int64), r"^offsets: must rise from 0 to .* 3"),
])
def test_wrapper_names_the_bad_column(column, value, message):
    instruments, rows = make_fleet(5, [3], False)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    good = to_checks(rows).__dict__ | {column: value}
    with pytest.raises(InputError, match=message):
        kernels.scan(spec, kernels.Checks(**good), S.new(1, 5), PARAMS)


def test_params_name_the_bad_parameter():
    from metrotrace.server.metrology.cusum import CusumParams
    from metrotrace.server.metrology.ewma import EwmaParams

    with pytest.raises(InputError, match=r"^h: "):
        CusumParams(h=0)
    with pytest.raises(InputError, match=r"^lam: "):
        EwmaParams(lam=1.5)
    with pytest.raises(InputError, match=r"^baseline: "):
        kernels.Params(baseline=1)


def test_kernel_tests_pass_as_pure_python_for_coverage():
    """NUMBA_DISABLE_JIT=1 runs the kernels as Python, so coverage sees every line."""
    here = Path(__file__)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here),
         str(here.with_name("test_pulses.py")), "-k", "not pure_python",
         "--hypothesis-profile", "metrology-quick"],
        env=env, cwd=here.parents[3], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def test_in_place_folds_into_the_given_state_and_equals_the_copying_call():
    instruments, rows = make_fleet(11, [25, 0, 40, 7, 31], True)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    copied = kernels.scan(spec, to_checks(rows), S.new(5, PARAMS.baseline), PARAMS)
    state = S.new(5, PARAMS.baseline)
    half = [n // 2 for n in (25, 0, 40, 7, 31)]
    returned = kernels.scan(spec, to_checks(rows, hi=half), state, PARAMS, in_place=True)
    assert returned.values is state.values and returned.base is state.base  # no copy
    kernels.scan(spec, to_checks(rows, lo=half), state, PARAMS, in_place=True)
    np.testing.assert_array_equal(state.values, copied.values)
    np.testing.assert_array_equal(state.base, copied.base)
