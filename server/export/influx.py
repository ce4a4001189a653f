"""Readings to InfluxDB v2 in batches, on a thread of its own, with retry and a bounded queue.

Invariant: `offer` returns at once, whatever InfluxDB does; at most `max_queued` records
wait, and the ones that do not fit are counted in `counts["dropped"]`, never silently
lost. Writes use the synchronous write API inside our own loop (influxdb-client's batching
mode does not flush on close and has lost points silently, research/iot.md §2.7). A point
is unique by measurement + tags + time, so a retried batch changes nothing.

    measurement  reading (weighing, dispense) | check (check, zero) | instrument_status
    tags         instrument, node (hex), kind, unit
    fields       value, gross, tare, reference, e, raw, seq (integers, base units)
    time         the record's t, ms; records made before the node's clock was set are skipped
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from metrotrace.firmware.metro.wire import record as wire

from ..store.rows import InstrumentRow, RecordRow

log = logging.getLogger("metrotrace.server.export")
MEASUREMENT = {wire.WEIGHING: "reading", wire.DISPENSE: "reading", wire.CHECK: "check",
               wire.ZERO: "check"}
_FIELDS = ("value", "gross", "tare", "reference", "e", "raw", "seq")


def _tag(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


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


def status_line(inst: InstrumentRow, t: int) -> str:
    status = inst.status.replace('"', "")
    return (f"instrument_status,instrument={_tag(inst.id)},site={_tag(inst.site)} "
            f'status="{status}",max={inst.max}i,min={inst.min}i,e={inst.e}i {t}')


class InfluxExporter:
    def __init__(self, url: str, token: str, org: str, bucket: str, *, batch: int = 5000,
                 max_queued: int = 200_000, retries: int = 5, backoff_s: float = 0.5,
                 timeout_ms: int = 10_000) -> None:
        self.org, self.bucket, self.batch = org, bucket, batch
        self.max_queued, self.retries, self.backoff_s = max_queued, retries, backoff_s
        self.counts: Counter[str] = Counter()
        self._queue: deque[str] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms)
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._thread = threading.Thread(target=self._run, name="influx-export", daemon=True)
        self._thread.start()

    def offer(self, rows: Iterable[RecordRow]) -> None:
        """Queue records for export; never blocks (ingest's listener)."""
        self._offer(line(r) for r in rows)

    def offer_status(self, instruments: Iterable[InstrumentRow], t: int) -> None:
        self._offer(status_line(i, t) for i in instruments)

    def _offer(self, lines: Iterable[str | None]) -> None:
        with self._wake:
            for text in lines:
                if text is None:
                    self.counts["skipped"] += 1
                elif len(self._queue) >= self.max_queued:
                    self.counts["dropped"] += 1
                else:
                    self._queue.append(text)
            self._wake.notify()

    def pending(self) -> int:
        with self._wake:
            return len(self._queue)

    def _take(self) -> list[str]:
        with self._wake:
            while not self._queue and not self._closing:
                self._wake.wait(1.0)
            n = min(self.batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        while True:
            lines = self._take()
            if not lines:
                return  # closing and drained
            self._send(lines)

    def _send(self, lines: list[str]) -> None:
        for attempt in range(self.retries):
            try:
                self._write.write(self.bucket, self.org, lines, write_precision=WritePrecision.MS)
                self.counts["written"] += len(lines)
                return
            except Exception as e:  # outermost loop of the export thread: log, count, retry
                self.counts["retries"] += 1
                log.warning("InfluxDB write failed (attempt %d): %s", attempt + 1, e)
                time.sleep(self.backoff_s * 2 ** attempt)
        self.counts["failed"] += len(lines)

    def close(self, timeout: float = 30.0) -> None:
        """Send what is queued (up to `timeout`), then stop."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        self._client.close()
