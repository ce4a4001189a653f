"""The drift monitor inside an ingest worker: `metrology.monitor.Monitor` on a timer.

Invariant: of all the workers on one store, only the holder of the store lease
`metrology_monitor` runs the monitor (a flock beside a SQLite file, a session advisory lock
on PostgreSQL: both vanish with the process that held them, so another worker takes over on
its next tick). The monitor uses a store connection of its own, so a long report never holds
ingest's connection. Each pass stores its alerts before publishing them (QoS 1) through the
worker's MQTT client; a failed pass is logged and counted and the next tick tries again
with a freshly opened store. After each pass the instruments' states (instrument -> state,
absent: ok) go to `on_states` (the InfluxDB exporter's `instrument_status`). The lease
holder also runs the trace feed (server/trace/feed.py: new node records -> trace events by
the stored trace rules) before each pass; a failed feed is logged and counted apart.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping

from ..store import open_store

LEASE = "metrology_monitor"

log = logging.getLogger("metrotrace.server.monitor")


class MonitorLoop:
    def __init__(self, store_url: str, every_s: float, publish: Callable[[str, str], None],
                 now_ms: Callable[[], int], counts: Counter[str],
                 on_states: Callable[[Mapping[str, str]], None] | None = None,
                 settings=None) -> None:
        self.store_url, self.every_s, self.publish = store_url, every_s, publish
        self.settings = settings  # metrology.settings.Settings, shared with the dashboard
        self.now_ms, self.counts, self.on_states = now_ms, counts, on_states
        self._store = None
        self._monitor = None
        self._feed = None

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: one pass every `every_s` seconds (the first after one interval, so
        a starting worker serves its backlog of messages first)."""
        try:
            while not stop.wait(self.every_s):
                self.tick()
        finally:
            self._close()

    def tick(self) -> int:
        """One pass if this worker holds the lease; returns the number of alerts raised."""
        try:
            if self._store is None:
                self._store = open_store(self.store_url)
            if not self._store.try_lease(LEASE):
                self._monitor = None  # another worker runs it: its alerts make ours stale
                return 0
            if self._monitor is None:
                from metrotrace.server.metrology.monitor import Monitor
                from metrotrace.server.metrology.settings import Settings

                s = self.settings or Settings()
                self._monitor = Monitor(self._store, params=s.params,
                                        sigma=dict(s.check_sigma) or None, publish=self.publish)
            self._feed_trace()
            alerts = self._monitor.run(self.now_ms())
            if self.on_states is not None:
                self.on_states(dict(self._monitor.states or {}))
        except Exception:  # outermost loop of the monitor thread: ingest must go on
            log.exception("drift monitor pass failed; retrying on the next tick")
            self.counts["monitor_error"] += 1
            self._close()
            return 0
        self.counts["monitor_runs"] += 1
        self.counts["monitor_alerts"] += len(alerts)
        return len(alerts)

    def _feed_trace(self) -> None:
        try:
            if self._feed is None:
                from metrotrace.server.trace.feed import TraceFeed

                self._feed = TraceFeed(self.store_url)
            self.counts["trace_events"] += self._feed.tick()
        except Exception:  # the feed must not stop the monitor; it retries next tick
            log.exception("trace feed pass failed; retrying on the next tick")
            self.counts["trace_feed_error"] += 1
            self._close_feed()

    def _close_feed(self) -> None:
        if self._feed is not None:
            self._feed.close()
        self._feed = None

    def _close(self) -> None:
        self._close_feed()
        if self._store is not None:
            self._store.close()
        self._store = self._monitor = None
