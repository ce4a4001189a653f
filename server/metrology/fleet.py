"""Fleet report: one state per instrument, the first alarm, and the predicted crossing date.

Invariant: the state is the worst that holds, in this order:
  out_of_tolerance      a check outside the in-service MPE since the last verification
  drifting              a confirmed CUSUM or EWMA signal on checks or zero readings (a
                        signal within Params.confirm_within readings of the previous one),
                        or the pulse comparison's repeated anomaly (dispensers)
  overdue_verification  the verification due date has passed
  warning               |r| > 0.8 seen, an unconfirmed chart signal, a pulse anomaly, or a
                        predicted MPE crossing before the due date (or within
                        `horizon_days` without one)
  ok
Computed vectorised over the state arrays; no Python loop per instrument until the rows
are written out.
"""

from __future__ import annotations

import numpy as np

from metrotrace.server.metrology import pulses, trend
from metrotrace.server.metrology import state as S

STATES = ("ok", "warning", "overdue_verification", "drifting", "out_of_tolerance")
OK, WARNING, OVERDUE, DRIFTING, OUT = range(5)


def _first(*columns: np.ndarray) -> np.ndarray:
    stacked = np.vstack(columns)
    with np.errstate(invalid="ignore"):
        return np.where(np.all(np.isnan(stacked), axis=0), np.nan, np.nanmin(
            np.where(np.isnan(stacked), np.inf, stacked), axis=0))


def classify(checks: np.ndarray, now_ms: int, due_ms: np.ndarray | None = None,
             zeros: np.ndarray | None = None, dispenses: np.ndarray | None = None,
             horizon_days: float = 90.0) -> dict[str, np.ndarray]:
    """State arrays (kernels / pulses) -> columns of the fleet report."""
    n = checks.shape[0]
    due = np.full(n, np.nan) if due_ms is None else np.asarray(due_ms, dtype=np.float64)
    zeros = S.new(n, 1).values if zeros is None else zeros
    dispenses = pulses.new(n) if dispenses is None else dispenses
    pred = trend.predict(checks)
    limit = np.where(np.isnan(due), now_ms + horizon_days * trend.DAY_MS, due)
    crossing_soon = pred["crossing_lo_ms"] <= limit  # NaN compares False
    out = (checks[:, S.N_OUT] > 0) | (zeros[:, S.N_OUT] > 0)
    drifting = ((checks[:, S.N_CONFIRMED] + zeros[:, S.N_CONFIRMED]) > 0) \
        | ~np.isnan(dispenses[:, pulses.ALARM_T])
    overdue = due < now_ms
    signals = checks[:, S.N_CUSUM] + checks[:, S.N_EWMA] + zeros[:, S.N_CUSUM] \
        + zeros[:, S.N_EWMA]
    warning = ((checks[:, S.N_WARN] + zeros[:, S.N_WARN] + dispenses[:, pulses.N_ANOMALY]
                + signals) > 0) | crossing_soon
    code = np.select([out, drifting, overdue, warning], [OUT, DRIFTING, OVERDUE, WARNING], OK)
    first = _first(checks[:, S.FIRST_OUT_T], checks[:, S.FIRST_CONFIRMED_T],
                   zeros[:, S.FIRST_OUT_T], zeros[:, S.FIRST_CONFIRMED_T],
                   dispenses[:, pulses.ALARM_T])
    return {"state": code, "first_alarm_ms": first, "last_r": checks[:, S.LAST_R],
            "max_abs_r": checks[:, S.MAX_ABS_R], "checks": checks[:, S.N_SEEN],
            "out": checks[:, S.N_OUT], "cusum": checks[:, S.N_CUSUM],
            "ewma": checks[:, S.N_EWMA],
            "confirmed": checks[:, S.N_CONFIRMED] + zeros[:, S.N_CONFIRMED],
            "zero_alarms": zeros[:, S.N_CUSUM]
            + zeros[:, S.N_EWMA] + zeros[:, S.N_OUT],
            "pulse_anomalies": dispenses[:, pulses.N_ANOMALY],
            "slope_r_per_day": pred["slope_per_day"], "crossing_ms": pred["crossing_ms"],
            "crossing_lo_ms": pred["crossing_lo_ms"], "crossing_hi_ms": pred["crossing_hi_ms"],
            "due_ms": due}


def rows(ids: list[str], columns: dict[str, np.ndarray]) -> list[dict]:
    """Columns -> one JSON-ready dict per instrument (NaN -> None, times as int ms)."""
    out = []
    for i, ident in enumerate(ids):
        row: dict = {"instrument": ident, "state": STATES[int(columns["state"][i])]}
        for name, col in columns.items():
            if name == "state":
                continue
            v = float(col[i])
            if np.isnan(v):
                row[name] = None
            elif name.endswith("_ms") or name in ("checks", "out", "cusum", "ewma", "confirmed",
                                                  "zero_alarms", "pulse_anomalies"):
                row[name] = int(v)
            else:
                row[name] = round(v, 6)
        out.append(row)
    return out
