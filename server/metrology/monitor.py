"""Periodic fleet check for the server: store -> report -> alerts on state changes.

Invariant: an alert is raised exactly when an instrument's state differs from the state
its last metrology alert recorded (so a restart neither repeats nor loses a change: the
previous states are read back from the store's alerts); each alert is one row in the
store's alerts table (kind = the new state, detail = the report row plus `previous`)
and, when a `publish(topic, payload)` callable is given, one QoS-1 message on
`metrotrace/v1/alerts/{site}` with the ingest worker's alert JSON. The report is
recomputed from all stored records each run (a back-filled record may be older than the
last run, and the kernels take each instrument's readings in time order). Each run also
writes every instrument's tolerance history (server/trace/tolerance.py) into the trace
tables on the same database, so a trace shows each sale's instrument state at the time
of the sale; rows change only when the history does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from metrotrace.server.metrology import analysis, kernels, storeio
from metrotrace.server.store.rows import AlertRow

SOURCE = "metrology"  # detail["source"] of every alert this module raises
ALERT_TOPIC = "metrotrace/v1/alerts/{site}"  # the MQTT contract (ingest/worker.py)


def previous_states(store, limit: int = 10_000_000) -> dict[str, str]:
    """instrument -> state of its latest metrology alert in the store."""
    out: dict[str, str] = {}
    for alert in store.alerts(limit=limit):  # id order: later alerts overwrite
        if alert.instrument and alert.detail.get("source") == SOURCE:
            out[alert.instrument] = alert.kind
    return out


@dataclass
class Monitor:
    """Call `run(now_ms)` from the server's scheduler (e.g. hourly, and each morning)."""

    store: object
    params: kernels.Params = field(default_factory=kernels.Params)
    type_tables: Mapping[str, str] | None = None
    tables_dir: str | None = None
    sigma: Mapping[str, float] | None = None  # instrument -> known check sigma (registry)
    publish: Callable[[str, str], None] | None = None
    states: dict[str, str] | None = None
    record_tolerance: bool = True  # write tolerance histories to the trace tables

    def run(self, now_ms: int) -> list[AlertRow]:
        """One pass: report, then one stored (and published) alert per state change."""
        if self.states is None:
            self.states = previous_states(self.store)
        loaded = storeio.load(self.store, self.type_tables)
        ids = [inst.id for inst in loaded.instruments]
        sigma = None if not self.sigma else np.array(
            [self.sigma.get(i, np.nan) for i in ids], dtype=np.float64)
        rows = analysis.report(loaded.instruments, loaded.verified, loaded.due, loaded.data,
                               now_ms, tables_dir=self.tables_dir, params=self.params,
                               sigma=sigma)
        if self.record_tolerance and rows:
            self._record_tolerance(rows, loaded.verified, now_ms)
        alerts = []
        for row, site in zip(rows, loaded.sites, strict=True):
            before = self.states.get(row["instrument"], "ok")
            if row["state"] == before:
                continue
            alert = AlertRow(now_ms, site, row["state"],
                             {**row, "previous": before, "source": SOURCE},
                             instrument=row["instrument"])
            alert = replace(alert, id=self.store.add_alert(alert))
            self.states[row["instrument"]] = row["state"]
            if self.publish is not None:
                from metrotrace.server.ingest.worker import alert_json

                self.publish(ALERT_TOPIC.format(site=site), alert_json(alert))
            alerts.append(alert)
        return alerts

    def _record_tolerance(self, rows: list[dict], verified: np.ndarray, now_ms: int) -> None:
        # a connection of its own: the trace tables' writer lock, not the store's
        from metrotrace.server.trace import tolerance
        from metrotrace.server.trace.store import TraceStore, connect

        trace = TraceStore(connect(self.store.url))
        try:
            trace.migrate()
            tolerance.record(trace, rows, verified.tolist(), now_ms)
        finally:
            trace.conn.close()
