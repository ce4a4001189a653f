"""Each instrument's tolerance history, as the metrology engine's fleet report knows it,
kept in trace_tolerance so a trace can say what state an instrument was in when it sold.

Invariant: an instrument's rows are (from_t, state) change points; the state of the row
that began last at or before t holds at t (query.TableTolerance). States are the fleet
report's (server/metrology/fleet.py): ok, warning, overdue_verification, drifting,
out_of_tolerance. From one report row the history since the last verification is:
- ok from the verification (0 when none is registered);
- overdue_verification from the due date, once it has passed;
- the row's state from `first_alarm_ms` when it is drifting or out_of_tolerance (the report
  does not time the drift signal and the first check out of tolerance separately, so an
  instrument that drifted first is shown out of tolerance from its first alarm: the recall
  errs on the side of the customer);
- warning from the first monitor run that saw it (a warning has no time of its own), kept
  when a worse state follows, dropped when the instrument is ok again.
At each change point the worst state that has begun holds. Rows before the current
verification (earlier periods) are never rewritten, so a re-verified instrument keeps
its past; rows since then are rewritten only when they differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .store import TraceStore

STATES = ("ok", "warning", "overdue_verification", "drifting", "out_of_tolerance")
RANK = {state: rank for rank, state in enumerate(STATES)}
ALARMS = ("drifting", "out_of_tolerance")


def intervals(row: dict[str, Any], verified_ms: int, now_ms: int,
              warning_since: int | None = None) -> list[tuple[int, str]]:
    """One fleet report row → its change points since verification, oldest first."""
    state = row["state"]
    if state not in RANK:
        raise ValueError(f"state: not a fleet report state: {state!r}")
    begins = [(verified_ms, "ok")]
    due = row.get("due_ms")
    if due is not None and due <= now_ms:
        begins.append((max(int(due), verified_ms), "overdue_verification"))
    first = row.get("first_alarm_ms")
    if state in ALARMS:
        begins.append((max(int(first if first is not None else now_ms), verified_ms), state))
    if state == "warning" or (warning_since is not None and state != "ok"):
        # a warning seen before stays in the history when a worse state follows
        begins.append((max(warning_since if warning_since is not None else now_ms,
                           verified_ms), "warning"))
    out: list[tuple[int, str]] = []
    worst = -1
    for t in sorted({t for t, _ in begins}):
        worst = max([worst] + [RANK[s] for b, s in begins if b == t])
        if not out or out[-1][1] != STATES[worst]:
            out.append((t, STATES[worst]))
    return out


def record(store: TraceStore, rows: Sequence[dict[str, Any]], verified: Sequence[int],
           now_ms: int) -> int:
    """Write the histories of a fleet report (rows with `verified[i]` the verification
    time of row i, 0 for none); return how many instruments' rows changed."""
    held: dict[str, list[tuple[int, str]]] = {}
    for instrument, from_t, state in store.rows(
            "SELECT instrument, from_t, state FROM trace_tolerance ORDER BY instrument, from_t"):
        held.setdefault(instrument, []).append((int(from_t), state))
    changes = []
    for row, since in zip(rows, verified, strict=True):
        if row["state"] not in RANK:  # a dashboard's "unknown" / "withdrawn": no history
            continue
        since = int(since or 0)
        current = [r for r in held.get(row["instrument"], []) if r[0] >= since]
        warned = next((t for t, s in current if s == "warning"), None)
        wanted = intervals(row, since, now_ms, warned)
        if wanted != current:
            changes.append((row["instrument"], since, wanted))
    if not changes:
        return 0
    store.begin_write()
    try:
        for instrument, since, _ in changes:
            store.execute("DELETE FROM trace_tolerance WHERE instrument = ? AND from_t >= ?",
                          (instrument, since))
        store.insert("trace_tolerance", ("instrument", "from_t", "state"),
                     [(instrument, t, s) for instrument, _, wanted in changes for t, s in wanted])
    except BaseException:
        store.rollback()
        raise
    store.commit()
    return len(changes)


class ToleranceCache:
    """trace_tolerance in memory, as CSR arrays by instrument code, for traces that state
    thousands of sales at once. It is loaded again whenever `tolerance_version` (trace_meta,
    counted up by a trigger on every write to the table, whoever writes) has changed, so
    it never answers from rows that are gone."""

    def __init__(self) -> None:
        self.version: str | None = "never loaded"
        self.names: list[str] = []  # state code → state (the table's own words)
        self.ptr = np.zeros(1, np.int64)
        self.from_t = np.zeros(0, np.int64)
        self.state = np.zeros(0, np.int64)

    def load(self, store: TraceStore, version: str | None, coded: Any) -> None:
        """Read the whole table; `coded(names)` gives instrument codes (the index's)."""
        rows = store.rows("SELECT instrument, from_t, state FROM trace_tolerance")
        self.version = version
        if not rows:
            self.ptr = np.zeros(1, np.int64)
            self.from_t = self.state = np.zeros(0, np.int64)
            return
        instruments, from_t, states = zip(*rows, strict=True)
        codes = np.asarray(coded(instruments), np.int64)
        times = np.asarray(from_t, np.int64)
        order = np.lexsort((times, codes))
        state_code = {s: i for i, s in enumerate(dict.fromkeys(states))}
        self.names = list(state_code)
        self.state = np.asarray([state_code[s] for s in states], np.int64)[order]
        self.from_t = times[order]
        counts = np.bincount(codes, minlength=int(codes.max()) + 1)
        self.ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def states(self, instrument: np.ndarray, times: np.ndarray) -> np.ndarray:
        """State codes (into `names`) at each time, -1 where none had begun or the
        instrument is NULL (code 0)."""
        from . import kernels  # numba: only where the index method runs

        return kernels.states(np.asarray(instrument, np.int64), np.asarray(times, np.int64),
                              self.ptr, self.from_t, self.state)
