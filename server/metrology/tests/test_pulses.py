"""Pulses vs indicated volume: the kernel equals its twin, batches compose, 0.6 % x 5."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrotrace.server.metrology import InputError, pulses
from metrotrace.server.metrology.tests import naive

K = 100_000  # pulses per 1000 L: 100 pulses per litre


def one(t, volume, n_pulses, kfactor=K):
    return pulses.Dispenses(np.array([0, len(t)]), np.array(t), np.array(volume),
                            np.array(n_pulses), np.full(len(t), kfactor))


def test_limit_is_0_6_percent_exclusive_and_the_fifth_anomaly_alarms():
    # 20 L = 2000 pulses; 20120 mL is exactly +0.6 % (allowed), 20121 mL is over.
    out = pulses.scan(one([1, 2], [20120, 19880], [2000, 2000]), pulses.new(1), [1])
    assert out[0, pulses.N_ANOMALY] == 0 and out[0, pulses.WORST_BP] == 60
    t = list(range(10, 16))
    out = pulses.scan(one(t, [20121] * 6, [2000] * 6), pulses.new(1), [1])
    assert out[0, pulses.N_ANOMALY] == 6
    assert out[0, pulses.FIRST_ANOMALY_T] == 10 and out[0, pulses.ALARM_T] == 14


def test_litre_units_and_missing_pulses():
    out = pulses.scan(one([1, 2], [20, 3], [2000, 0]), pulses.new(1), [1000])
    assert out[0, pulses.N_ANOMALY] == 1 and out[0, pulses.FIRST_ANOMALY_T] == 2


def make(seed, counts):
    rng = np.random.default_rng(seed)
    rows = []
    for n in counts:
        t = np.cumsum(rng.integers(0, 5, n)).astype(np.int64)
        k = rng.choice([50_000, 100_000, 123_457], n)
        p = rng.integers(0, 10_000, n)
        vol = np.round(p * 1_000_000 / k * (1 + rng.normal(0, 0.004, n))).astype(np.int64)
        rows.append((t, np.maximum(vol, 0), p.astype(np.int64), k.astype(np.int64)))
    return rows


def to_dispenses(rows, lo=None, hi=None):
    parts = [[c[(lo[i] if lo else 0):(hi[i] if hi else len(c))] for c in r]
             for i, r in enumerate(rows)]
    offsets = np.concatenate([[0], np.cumsum([len(p[0]) for p in parts])])
    return pulses.Dispenses(offsets, *(np.concatenate([p[c] for p in parts]) for c in range(4)))


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 30), min_size=1, max_size=4),
       st.floats(0, 1))
def test_kernel_equals_twin_and_batches_compose(seed, counts, cut):
    rows = make(seed, counts)
    ml = np.ones(len(counts), np.int64)
    whole = pulses.scan(to_dispenses(rows), pulses.new(len(counts)), ml)
    mid = [int(cut * n) for n in counts]
    split = pulses.scan(to_dispenses(rows, None, mid), pulses.new(len(counts)), ml)
    split = pulses.scan(to_dispenses(rows, mid, None), split, ml)
    np.testing.assert_array_equal(split, whole)
    for values, (t, vol, p, k) in zip(whole, rows, strict=True):
        twin = naive.Dispenser(1)
        for row in zip(t.tolist(), vol.tolist(), p.tolist(), k.tolist(), strict=True):
            twin.add(*row)
        assert values[pulses.N_TX] == twin.n_tx
        assert values[pulses.N_ANOMALY] == len(twin.anomalies)
        assert math.isclose(values[pulses.WORST_BP], twin.worst, rel_tol=1e-9, abs_tol=1e-9)
        assert (values[pulses.ALARM_T] == twin.alarm_t
                or (math.isnan(twin.alarm_t) and math.isnan(values[pulses.ALARM_T])))


def test_wrapper_names_the_bad_column():
    with pytest.raises(InputError, match=r"^kfactor: out of range at row 0"):
        pulses.scan(one([1], [20000], [2000], kfactor=0), pulses.new(1), [1])
    with pytest.raises(InputError, match=r"^limit_bp: "):
        pulses.PulseParams(limit_bp=0)
    with pytest.raises(InputError, match=r"^t: transactions of instrument 0 go back"):
        pulses.scan(one([5, 4], [1, 1], [1, 1]), pulses.new(1), [1])
