"""Slow, obviously-correct twins of the kernels (the stumpy habit): one instrument at a
time, one reading at a time, exact Fractions for the legal flags straight from the
tables (not from the compiled integer profiles), textbook formulas for the rest."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import numpy as np

from metrotrace.server.metrology import mpe as mpe_mod
from metrotrace.server.metrology.normalise import MIN_SPREAD_E, RAW_NONE

NAN = math.nan


def baseline_fit(rows, e):
    """rows: (err, load, raw) of the baseline -> (mu0, sigma, mode, a, inv_b)."""
    indications = [err + load for err, load, _ in rows]
    has_raw = all(raw != RAW_NONE for _, _, raw in rows)
    mode, a, inv_b = 0, 0.0, 0.0
    if has_raw and max(indications) - min(indications) < MIN_SPREAD_E * e:
        mode, a = 2, float(statistics.median(load for _, load, _ in rows))
    elif has_raw:
        b, a0 = np.polyfit(indications, [raw for _, _, raw in rows], 1)
        if b > 0:
            mode, a, inv_b = 1, a0, 1.0 / b
    xs = [v for v in (charted(err, load, raw, mode, a, inv_b) for err, load, raw in rows)
          if not math.isnan(v)]
    med = statistics.median(xs)
    mad = statistics.median(abs(x - med) for x in xs)
    kept = [x for x in xs if abs(x - med) <= 3.5 * 1.482602218505602 * mad]
    mu0 = statistics.fmean(kept)
    sigma = statistics.stdev(kept) if len(kept) > 1 else 0.0
    step = e if mode == 0 else (inv_b if mode == 1 else 1.0)
    return mu0, max(sigma, step / math.sqrt(12)), mode, a, inv_b


def charted(err, load, raw, mode, a, inv_b):
    if mode == 1 and raw != RAW_NONE:
        return (raw - a) * inv_b - load
    if mode == 2:
        return float(raw) if raw != RAW_NONE and load == a else NAN
    return float(err)


class Instrument:
    """All detectors of one instrument, fed one check at a time."""

    def __init__(self, inst, tables, since=0, baseline=30, k=0.5, h=4.77, lam=0.2, L=2.86,
                 window=100.0, mu0=NAN, sigma=NAN, confirm_within=30):
        self.inst, self.tables, self.since, self.n0 = inst, tables, since, baseline
        self.k, self.h, self.lam = k, h, lam
        self.limit = L * math.sqrt(lam / (2 - lam))
        self.gamma = 1 - 1 / window
        self.rows = []
        self.mu0, self.sigma, self.mode, self.a, self.inv_b = mu0, sigma, 0, 0.0, 0.0
        self.last_t = -math.inf
        self.n_seen = 0
        self.out, self.warn, self.uncovered = [], [], 0
        self.last_r, self.max_abs_r = NAN, 0.0
        self.cusum_hi = self.cusum_lo = self.ewma = 0.0
        self.cusum_alarms, self.ewma_alarms = [], []
        self.trend_points = []  # (t, r)
        self.confirm_within = confirm_within
        self.signal_readings = []  # n_seen at each reading where either chart signalled
        self.confirmed = []  # t of each signal within confirm_within of the previous one

    def add(self, t, indication, reference, raw=RAW_NONE):
        if t < self.since:
            return
        assert t >= self.last_t, "readings out of time order"
        self.last_t = t
        err = indication - reference
        limit = mpe_mod.mpe(self.inst, reference, self.tables)
        if limit is None:
            self.uncovered += 1
        else:
            r = Fraction(err) / limit
            self.last_r = float(r)
            self.max_abs_r = max(self.max_abs_r, abs(float(r)))
            if abs(r) > 1:
                self.out.append(t)
            if abs(r) > Fraction(4, 5):
                self.warn.append(t)
        if math.isnan(self.sigma):
            self.rows.append((err, reference, raw))
            self.n_seen += 1
            if self.n_seen == self.n0:
                self.mu0, self.sigma, self.mode, self.a, self.inv_b = baseline_fit(
                    self.rows, self.inst.e)
            return
        self.n_seen += 1
        x = charted(err, reference, raw, self.mode, self.a, self.inv_b)
        if not math.isnan(x):
            z = (x - self.mu0) / self.sigma
            self.cusum_hi = max(0.0, self.cusum_hi + z - self.k)
            self.cusum_lo = max(0.0, self.cusum_lo - z - self.k)
            signal = self.cusum_hi > self.h or self.cusum_lo > self.h
            if signal:
                self.cusum_alarms.append(t)
                self.cusum_hi = self.cusum_lo = 0.0
            self.ewma = (1 - self.lam) * self.ewma + self.lam * z
            if abs(self.ewma) > self.limit:
                self.ewma_alarms.append(t)
                self.ewma = 0.0
                signal = True
            if signal:
                if self.signal_readings and \
                        self.n_seen - self.signal_readings[-1] <= self.confirm_within:
                    self.confirmed.append(t)
                self.signal_readings.append(self.n_seen)
        if limit is not None:
            trended = x if self.mode == 1 else float(err)
            self.trend_points.append((t, trended / float(limit)))

    def trend_sums(self):
        """Weighted sums of the trend, computed afresh from all points."""
        if not self.trend_points:
            return [0.0] * 7, NAN
        t0 = self.trend_points[0][0]
        n = len(self.trend_points)
        sums = [0.0] * 7
        for m, (t, r) in enumerate(self.trend_points):
            w = self.gamma ** (n - 1 - m)
            d = (t - t0) / 86_400_000.0
            for c, v in enumerate((1.0, d, r, d * d, d * r, r * r)):
                sums[c] += w * v
            sums[6] += w * w
        return sums, float(t0)


class Dispenser:
    """Pulses against indicated volume, one transaction at a time, with Fractions."""

    def __init__(self, ml_per_unit, since=0, limit=Fraction(6, 1000), repeat=5):
        self.ml, self.since, self.limit, self.repeat = ml_per_unit, since, limit, repeat
        self.n_tx, self.anomalies, self.alarm_t, self.worst = 0, [], NAN, 0.0

    def add(self, t, volume, pulses, kfactor):
        if t < self.since:
            return
        self.n_tx += 1
        expected_ml = Fraction(pulses * 1000 * 1000, kfactor)  # K pulses per 1000 L
        if pulses > 0:
            self.worst = max(self.worst, float(abs(volume * self.ml - expected_ml)
                                               / expected_ml * 10_000))
            bad = abs(volume * self.ml - expected_ml) > self.limit * expected_ml
        else:
            bad = volume > 0
        if bad:
            self.anomalies.append(t)
            if len(self.anomalies) == self.repeat:
                self.alarm_t = float(t)


def predict(points, gamma, z=1.96, min_t=3.0):
    """Twin of trend.predict for one instrument, from its trend points (t ms, r) rather than
    the kernel's running sums: weighted least squares by np.polyfit with the forgetting
    weights gamma**age, the residual variance per unit weight inflated by n_eff / (n_eff - 2)
    (n_eff = (sum w)^2 / sum w^2), and the delta-method interval of t* = (sign(b) - a) / b
    from the full covariance of (b, a). -> (slope per day, crossing, lo, hi) in ms; NaN where
    no crossing is predicted. Also returns the t statistic |b| / se(b) (NaN: no fit)."""
    none = (NAN, NAN, NAN, NAN, NAN)
    if len(points) < 2:
        return none
    t0 = points[0][0]
    td = np.array([(t - t0) / 86_400_000.0 for t, _ in points])
    r = np.array([r for _, r in points])
    if np.all(td == td[0]):
        return none
    w = gamma ** np.arange(len(points) - 1, -1, -1, dtype=np.float64)
    n_eff = w.sum() ** 2 / (w * w).sum()
    (b, a), cov = np.polyfit(td, r, 1, w=np.sqrt(w), cov="unscaled")
    if n_eff < 5:
        return b, NAN, NAN, NAN, NAN
    resid = r - (a + b * td)
    s2 = (w * resid * resid).sum() / w.sum() * n_eff / (n_eff - 2.0)
    cov = s2 * cov
    t_stat = abs(b) / math.sqrt(cov[0, 0]) if cov[0, 0] > 0 else math.inf
    if b == 0 or not t_stat > min_t:  # b == 0: a flat line (exactly) crosses nothing
        return b, NAN, NAN, NAN, t_stat
    target = math.copysign(1.0, b)
    t_star = (target - a) / b
    grad = np.array([-(target - a) / b**2, -1.0 / b])  # d t* / d(b, a)
    sd = math.sqrt(grad @ cov @ grad)
    day = 86_400_000.0
    crossing = t0 + t_star * day
    return b, crossing, crossing - z * sd * day, crossing + z * sd * day, t_stat
