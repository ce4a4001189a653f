"""Readings and instrument status to InfluxDB v2 in batches, on a thread of its own, with
retry, a bounded queue, and catch-up from the store.

Invariant: `offer` returns at once, whatever InfluxDB does; at most `max_queued` lines
wait. A record line that does not fit (or whose write fails after every retry) is counted
(`dropped`, `failed`), logged, and its instrument's time range remembered: once the queue
has drained, the export thread reads those ranges back from the store (the record of
truth, `store_url`) and writes them again (`caught_up`). A point is unique by measurement
+ tags + time, so writing one twice changes nothing. Without a `store_url` nothing is
caught up. Writes use the synchronous write API inside our own loop (influxdb-client's
batching mode does not flush on close and has lost points silently, research/iot.md §2.7).

    measurement  reading (weighing, dispense) | check (check, zero) | instrument_status
    tags         instrument, node (hex), kind, unit          | instrument, site
    fields       value, gross, tare, reference, e, raw, seq  | status, max, min, e, drift
                 (integers, base units)                        (drift: the monitor's state)
    time         the record's t, ms (records made before the node's clock was set are
                 skipped)                                      | when the status was read
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from contextlib import suppress

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from metrotrace.firmware.metro.wire import record as wire

from ..store.rows import InstrumentRow, RecordRow

log = logging.getLogger("metrotrace.server.export")
MEASUREMENT = {wire.WEIGHING: "reading", wire.DISPENSE: "reading", wire.CHECK: "check",
               wire.ZERO: "check"}
_FIELDS = ("value", "gross", "tare", "reference", "e", "raw", "seq")
LOG_EVERY_S = 10.0  # at most one "dropped" warning per this interval (plus the first)

Item = tuple[str, str | None, int | None]  # (line, instrument, record t); status: no t


def _tag(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _text(text: str) -> str:
    return text.replace("\\", "").replace('"', "")


def line(row: RecordRow) -> str | None:
    """One line of line protocol for a record, or None if it has no place in InfluxDB."""
    measurement = MEASUREMENT.get(row.kind)
    if measurement is None or row.tq == wire.TQ_UNSET:
        return None
    tags = f"instrument={_tag(row.inst or 'unknown')},kind={wire.KIND_NAMES[row.kind]}," \
           f"node={row.node.hex()}" + (f",unit={_tag(row.unit)}" if row.unit else "")
    fields = ",".join(f"{name}={getattr(row, name)}i" for name in _FIELDS
                      if getattr(row, name) is not None)
    return f"{measurement},{tags} {fields} {row.t}"


def status_line(inst: InstrumentRow, t: int, drift: str | None = None) -> str:
    extra = f',drift="{_text(drift)}"' if drift else ""
    return (f"instrument_status,instrument={_tag(inst.id)},site={_tag(inst.site)} "
            f'status="{_text(inst.status)}",max={inst.max}i,min={inst.min}i,e={inst.e}i'
            f"{extra} {t}")


class InfluxExporter:
    def __init__(self, url: str, token: str, org: str, bucket: str, *, batch: int = 5000,
                 max_queued: int = 200_000, retries: int = 5, backoff_s: float = 0.5,
                 timeout_ms: int = 10_000, store_url: str | None = None,
                 status_every_s: float = 0.0) -> None:
        """`store_url`: where dropped lines are caught up from, and instrument status read
        (every `status_every_s` seconds, 0: never; the first at start)."""
        self.org, self.bucket, self.batch = org, bucket, batch
        self.max_queued, self.retries, self.backoff_s = max_queued, retries, backoff_s
        self.store_url, self.status_every_s = store_url, status_every_s
        self.counts: Counter[str] = Counter()
        self._queue: deque[Item] = deque()
        self._gaps: dict[str, tuple[int, int]] = {}  # instrument -> [t0, t1] to catch up
        self._wake = threading.Condition()
        self._closing = False
        self._logged_at = -LOG_EVERY_S
        self._drift: dict[str, str] | None = None
        self._status_at = 0.0  # monotonic time of the next status export
        self._store = None
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._thread = threading.Thread(target=self._run, name="influx-export", daemon=True)
        self._thread.start()

    # -- producers (never block) ---------------------------------------------------------
    def offer(self, rows: Iterable[RecordRow]) -> None:
        """Queue records for export; never blocks (ingest's listener)."""
        self._offer((line(r), r.inst, r.t) for r in rows)

    def offer_status(self, instruments: Iterable[InstrumentRow], t: int) -> None:
        drift = self._drift
        self._offer((status_line(i, t, None if drift is None else drift.get(i.id, "ok")),
                     None, None) for i in instruments)

    def offer_drift(self, states: Mapping[str, str]) -> None:
        """The drift monitor's states after a pass (instrument -> state; absent: ok): sent
        with the next status export, which this makes due at once."""
        with self._wake:
            self._drift = dict(states)
            self._status_at = 0.0
            self._wake.notify()

    def _offer(self, items: Iterable[tuple[str | None, str | None, int | None]]) -> None:
        dropped = 0
        with self._wake:
            for text, inst, t in items:
                if text is None:
                    self.counts["skipped"] += 1
                elif len(self._queue) >= self.max_queued:
                    dropped += 1
                    self._remember(inst, t)
                else:
                    self._queue.append((text, inst, t))
            self.counts["dropped"] += dropped
            self._wake.notify()
        if dropped:
            self._warn_dropped()

    def _remember(self, inst: str | None, t: int | None) -> None:
        """Keep what a lost record line covered, to read it back from the store (under
        the lock). Status lines need nothing: the next status export replaces them."""
        if t is None:
            return
        if inst is None or self.store_url is None:
            self.counts["lost"] += 1  # no instrument to find it by, or no store
            return
        lo, hi = self._gaps.get(inst, (t, t))
        self._gaps[inst] = (min(lo, t), max(hi, t))

    def _warn_dropped(self) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("InfluxDB export behind: %d lines dropped so far (queue of %d full), "
                        "%s", self.counts["dropped"], self.max_queued,
                        "to be caught up from the store" if self.store_url
                        else "not caught up (no store)")

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def gaps(self) -> dict[str, tuple[int, int]]:
        with self._wake:
            return dict(self._gaps)

    # -- the export thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                self._maybe_status()
                if self._gaps and self.pending() < self.batch and self._catch_up():
                    continue
                items = self._take()
                if items:
                    self._send(items)
                elif self._closing:
                    return
        finally:
            self._close_store()

    def _take(self) -> list[Item]:
        with self._wake:
            if not self._queue and not self._closing:
                self._wake.wait(1.0)
            n = min(self.batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _open_store(self):
        if self._store is None:
            from ..store import open_store

            self._store = open_store(self.store_url)
        return self._store

    def _maybe_status(self) -> None:
        if not (self.store_url and self.status_every_s > 0) or self._closing \
                or time.monotonic() < self._status_at:
            return
        self._status_at = time.monotonic() + self.status_every_s
        try:
            instruments = self._open_store().registry()["instruments"]
        except Exception:  # outermost loop of the export thread: ingest must go on
            log.exception("instrument status: cannot read the registry; next time")
            self._close_store()
            return
        self.offer_status(instruments, time.time_ns() // 1_000_000)
        self.counts["status_exports"] += 1

    def _catch_up(self) -> bool:
        """Write one page of one remembered range again, read from the store; True if a
        page went out (the range shrinks), False if the store or InfluxDB failed."""
        with self._wake:
            inst, (lo, hi) = next(iter(self._gaps.items()))
        try:
            rows = self._open_store().records(instrument=inst, kinds=tuple(MEASUREMENT),
                                              t0=lo, t1=hi + 1, limit=self.batch)
        except Exception:  # outermost loop of the export thread: ingest must go on
            log.exception("catch-up: cannot read the store; later")
            self._close_store()
            return False
        lines = [x for x in map(line, rows) if x is not None]
        if lines and not self._write_lines(lines):
            return False
        self.counts["caught_up"] += len(lines)
        done = len(rows) < self.batch
        # the next page starts at the last t read (rewriting its points is harmless), or
        # after it if a whole page had one t
        nxt = rows[-1].t if rows and rows[-1].t > lo else lo + 1
        with self._wake:
            now_lo, now_hi = self._gaps[inst]  # offer() may have widened it meanwhile
            if now_lo < lo:  # an older drop since: start again from there
                self._gaps[inst] = (now_lo, now_hi)
            elif done and now_hi <= hi:
                del self._gaps[inst]
            elif done:
                self._gaps[inst] = (hi + 1, now_hi)
            else:
                self._gaps[inst] = (nxt, now_hi)
        return True

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            with suppress(Exception):  # a broken connection: reopened on the next use
                store.close()

    def _write_lines(self, lines: list[str]) -> bool:
        for attempt in range(self.retries):
            try:
                self._write.write(self.bucket, self.org, lines, write_precision=WritePrecision.MS)
                self.counts["written"] += len(lines)
                return True
            except Exception as e:  # outermost loop of the export thread: log, count, retry
                self.counts["retries"] += 1
                log.warning("InfluxDB write failed (attempt %d): %s", attempt + 1, e)
                time.sleep(self.backoff_s * 2 ** attempt)
        return False

    def _send(self, items: list[Item]) -> None:
        if self._write_lines([text for text, _, _ in items]):
            return
        self.counts["failed"] += len(items)
        with self._wake:
            for _, inst, t in items:
                self._remember(inst, t)

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued and catch up what was dropped (up to `timeout`), then stop."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        self._client.close()
