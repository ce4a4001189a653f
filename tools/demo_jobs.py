"""The demo server's periodic jobs, one process: trace rules over newly stored records, and
the drift engine over the whole store.

    python -m metrotrace.tools.demo_jobs --data-dir DIR [--every 2]

Each pass:
1. Records stored since the last pass (by envelope id: the store's own order of arrival)
   go through the trace rules (server/trace/rules.py) in (t, node, seq) order, and the
   events they make are captured one record at a time, so a record no rule can place
   (a test weight's weighing, a status) is counted by reason and holds nothing up.
2. The drift engine (server/metrology/monitor.py) recomputes every instrument's state
   from the store, with the drift settings of the data directory (DIR/drift-settings.json,
   which `metrotrace server api --data-dir DIR` and the demo's summary read too), and
   stores one alert per state change; the monitor also writes each instrument's tolerance
   history into the trace tables, so a recall lists each sale's instrument with its state
   at the time of the sale.
3. A status file (jobs.json, replaced atomically at the end of the pass; "t" is when the
   pass began) says what was done, for the demo's progress display and its summary.

Invariant: a record's events are captured at most once (a pass starts after the last
envelope whose records it finished). Runs until SIGINT/SIGTERM; the pass in progress
completes first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from metrotrace.firmware.metro.wire import record as wire
from metrotrace.server.metrology import settings
from metrotrace.server.metrology.monitor import Monitor
from metrotrace.server.store import open_store
from metrotrace.server.trace import DocumentError, RuleError
from metrotrace.server.trace.store import TraceStore
from metrotrace.tools.demo_scenario import rules as demo_rules
from metrotrace.tools.storeargs import SQLITE_FILE

STEPS = {"receiving": "receipts", "retail_selling": "sales", "dispensing": "dispenses"}


class TraceFeed:
    """Stored node records -> trace events (the rules' tank state lives here)."""

    def __init__(self, db: Path) -> None:
        self.db = sqlite3.connect(db, timeout=30)
        self.trace = TraceStore(sqlite3.connect(db, timeout=30))
        self.trace.migrate()
        self.rules = demo_rules()
        self.after = 0  # last envelope id fully fed
        self.counts: Counter[str] = Counter()
        self.unplaced: Counter[str] = Counter()

    def new_records(self) -> list[dict]:
        rows = self.db.execute("SELECT record, envelope_id FROM records WHERE envelope_id > ?",
                               (self.after,)).fetchall()
        self.db.commit()  # end the read transaction: the next pass sees new commits
        if rows:
            self.after = max(envelope for _, envelope in rows)
        recs = [wire.decode(bytes(data)) for data, _ in rows]
        recs.sort(key=lambda r: (r["t"], r["node"], r["seq"]))
        return recs

    def feed(self) -> None:
        for rec in self.new_records():
            try:
                events = self.rules.events(rec)
            except RuleError as err:
                self.unplaced[f"{wire.KIND_NAMES[rec['kind']]}: {err.field}"] += 1
                continue
            if not events:
                continue
            try:
                self.trace.capture(events, time.time_ns() // 1_000_000)
            except DocumentError as err:
                self.unplaced[f"refused: {err.field}"] += 1
                continue
            for event in events:
                self.counts[STEPS.get(event.biz_step, event.biz_step or event.type)] += 1


def write_status(path: Path, status: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, sort_keys=True))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between passes")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    db = args.data_dir / SQLITE_FILE
    feed = TraceFeed(db)
    store = open_store(f"sqlite:///{db}")
    drift = settings.for_data_dir(args.data_dir)
    monitor = Monitor(store, params=drift.params, sigma=drift.check_sigma)
    status_path = args.data_dir / "jobs.json"
    passes, changes, took = 0, [], 0.0
    while not stop.is_set():
        started, began_ms = time.monotonic(), time.time_ns() // 1_000_000
        feed.feed()
        now = time.time_ns() // 1_000_000
        for alert in monitor.run(now):
            changes.append({"t": alert.t, "instrument": alert.instrument, "state": alert.kind,
                            "previous": alert.detail.get("previous")})
        passes += 1
        took = time.monotonic() - started
        write_status(status_path, {"passes": passes, "last_pass_s": round(took, 3),
                                   "trace": dict(feed.counts), "unplaced": dict(feed.unplaced),
                                   "states": dict(monitor.states or {}), "changes": changes,
                                   "t": began_ms})
        stop.wait(max(0.0, args.every - took))
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
