"""The drift kernel equals its naive twin, and batches split anywhere equal one batch."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrotrace.server.metrology import InputError, kernels, tables, tiles
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
    for batch in split(rows, counts, cuts):
        state = kernels.scan(spec, batch, state, PARAMS)
    np.testing.assert_array_equal(state.values, whole.values)  # NaN == NaN here


def split(rows, counts, cuts):
    """Per-instrument row bounds of the batches that `cuts` (fractions) make."""
    bounds = [[0] * len(counts)]
    for c in sorted(cuts):
        bounds.append([max(b, int(c * n)) for b, n in zip(bounds[-1], counts, strict=True)])
    bounds.append(counts)
    return [to_checks(rows, lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=6)
@given(st.integers(0, 2**32 - 1), st.integers(tiles.TILE, 2 * tiles.TILE + 10), st.booleans(),
       st.lists(st.floats(0, 1), min_size=1, max_size=3))
def test_tiles_equal_the_naive_twin_and_any_batch_split(seed, n, with_raw, cuts):
    """Fleets of one or two full tiles (the vector path, tiles.py) and a partial one: the
    lanes give the twin's results, and a batch split, which moves readings between the
    vector path and the one-at-a-time path, changes no bit of the state."""
    counts = np.random.default_rng(seed).integers(PARAMS.baseline + 1, 30, n).tolist()
    instruments, rows = make_fleet(seed, counts, with_raw)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    stats: dict = {}
    whole = kernels.scan(spec, to_checks(rows), S.new(n, PARAMS.baseline), PARAMS,
                         stats=stats)
    assert stats["tiled"] >= tiles.TILE  # the lanes ran
    for values, twin in zip(whole.values, run_naive(instruments, rows, PARAMS), strict=True):
        assert_matches_twin(values, twin)
    state = S.new(n, PARAMS.baseline)
    for batch in split(rows, counts, cuts):
        state = kernels.scan(spec, batch, state, PARAMS)
    np.testing.assert_array_equal(state.values, whole.values)


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


@pytest.mark.parametrize("lane_row", [0, 9, tiles.CHUNK])
def test_time_going_back_on_the_vector_path_is_named_at_its_row(lane_row):
    """A full tile (the lanes run) with one instrument whose reading lane_row of its charted
    readings goes back in time: the error names that instrument and row, whether the
    reading comes first (against the state's last time, from an earlier batch), later, or
    first in a chunk of the time-major copy."""
    n, per = tiles.TILE + 3, 6 + tiles.CHUNK + 8
    instruments, rows = make_fleet(11, [per] * n, False)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    state = kernels.scan(spec, to_checks(rows, hi=[6] * n), S.new(n, PARAMS.baseline), PARAMS)
    t = rows[7][0]
    t[6 + lane_row] = t[5 + lane_row] - 1
    rest = to_checks(rows, lo=[6] * n)
    with pytest.raises(InputError, match=rf"^t: readings of instrument 7 go back in time at "
                                         rf"row {int(rest.offsets[7]) + lane_row} "):
        kernels.scan(spec, rest, state, PARAMS)
    t[6 + lane_row] = t[5 + lane_row]  # equal times are in order
    stats: dict = {}
    kernels.scan(spec, to_checks(rows, lo=[6] * n), state, PARAMS, stats=stats)
    assert stats["tiled"] >= tiles.TILE * (per - 6)  # the lanes took every reading


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
    for name, bad in (("warn", Fraction(1)), ("trend_window", 1.0), ("confirm_within", 0)):
        with pytest.raises(InputError, match=rf"^{name}: "):
            kernels.Params(**{name: bad})


def test_wrapper_names_a_bad_spec_or_state():
    instruments, rows = make_fleet(5, [6, 6], False)
    spec = kernels.FleetSpec.build(instruments, TABLES)
    checks, state = to_checks(rows), S.new(2, 5)
    pr = spec.profiles
    falling = dataclasses.replace(pr, upper=pr.upper[::-1].copy())
    for bad, message in (
            (dataclasses.replace(spec, quantum=spec.quantum[:1]), r"^quantum: expected one"),
            (dataclasses.replace(spec, quantum=spec.quantum * 0), r"^quantum: e must be"),
            (dataclasses.replace(spec, profiles=falling), r"^profiles.upper: band bounds")):
        with pytest.raises(InputError, match=message):
            kernels.scan(bad, checks, state, PARAMS)
    with pytest.raises(InputError, match=r"^sigma: a known sigma must be positive"):
        kernels.scan(spec, checks, S.new(2, 5, mu0=[0.0, 0.0], sigma=[1.0, -1.0]), PARAMS)
    with pytest.raises(InputError, match=r"^baseline: state was made for 7 readings"):
        kernels.scan(spec, checks, S.new(2, 7), PARAMS)


# The kernels' modules, and the line coverage their tests must reach when the kernels run
# as plain Python (docs/metrology.md, "Tests").
COVERED = ("kernels", "tiles", "fold", "cusum", "ewma", "trend", "pulses")
MIN_LINE_COVERAGE = 90.0


@pytest.mark.slow
def test_kernel_tests_pass_as_pure_python_with_line_coverage(tmp_path):
    """NUMBA_DISABLE_JIT=1 runs the kernels as Python, so coverage sees every line: the
    kernel, tile, trend and pulse tests rerun so, under coverage, and each module of
    COVERED must reach MIN_LINE_COVERAGE."""
    here = Path(__file__)
    package = Path(kernels.__file__).parent
    include = ",".join(str(package / f"{name}.py") for name in COVERED)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", COVERAGE_FILE=str(tmp_path / "coverage"))
    done = subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--include={include}", "-m", "pytest",
         "-q", "-p", "no:cacheprovider", str(here), str(here.with_name("test_pulses.py")),
         str(here.with_name("test_trend.py")), "-k", "not pure_python",
         "--hypothesis-profile", "metrology-quick"],
        env=env, cwd=here.parents[3], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
    report = tmp_path / "coverage.json"
    subprocess.run([sys.executable, "-m", "coverage", "json", "-q", "-o", str(report)],
                   env=env, check=True, timeout=60)
    files = json.loads(report.read_text())["files"]
    got = {Path(name).stem: f["summary"]["percent_covered"] for name, f in files.items()}
    assert set(got) == set(COVERED), got
    low = {name: round(pct, 1) for name, pct in got.items() if pct < MIN_LINE_COVERAGE}
    assert not low, f"line coverage below {MIN_LINE_COVERAGE} % without the JIT: {low}"


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
