"""The node's gateway link as the tests see it: wire frames in, acknowledgements out.

`Link` opens any pyserial URL (a board's UART adapter, a pty from the bridge, a
`socket://` or `rfc2217://` rig), decodes frames with the firmware's own wire code,
checks each tag with the node key and, like the gateway, acknowledges along the
`prev` chain (gateway/acks.py). Tests read like specifications:

    rec = link.expect_record(kind="weighing", where=lambda r: r["net"] == 1250)

Records are dicts of their fields with `kind` as its name ("weighing"). A failed
expectation raises ExpectTimeout with what did arrive, as pytest-embedded reports the
unmatched buffer. `acking = False` plays a gateway that stores nothing (the node keeps
resending; a busy or absent network).

Invariant: every record with a good tag is kept in `records` in arrival order, with
its bytes in `raw` and the host's arrival time in `arrived` (by seq; a resend keeps
the first arrival); a bad tag or a damaged frame is counted, never returned.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable

import serial

from metrotrace.firmware.metro.wire import frame, record
from metrotrace.gateway.acks import AckTracker

from .console import ExpectTimeout


class Link:
    def __init__(self, url: str, node: bytes, key: bytes, baudrate: int = 115200) -> None:
        self._state(url, node, key)
        self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.02)
        # Like a gateway, the link reads and acknowledges all the time, not only while
        # a test waits: a node left unacknowledged would start its go-back-N rounds.
        self._thread = threading.Thread(target=self._run, name=f"link-{url}", daemon=True)
        self._thread.start()

    def _state(self, url: str, node: bytes, key: bytes) -> None:
        self.url = url
        self.node = node
        self.key = key
        self.decoder = frame.Decoder()
        self.records: list[dict] = []
        self.raw: dict[int, bytes] = {}  # seq -> record bytes (first arrival)
        self.arrived: dict[int, float] = {}  # seq -> time.monotonic() of first arrival
        self.resends = 0
        self.bad_tags = 0
        self.forgeries = 0  # a seq seen again with other bytes
        self.acking = True
        self.acks = AckTracker()
        self._unread: list[dict] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.port.close()

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.port.read(65536)
            except (serial.SerialException, OSError):
                return  # the port is gone (closed, adapter unplugged)
            if data:
                self._deliver(self.decoder.feed(data))

    def _deliver(self, items: list) -> None:
        """Keep the good records among decoded frames; acknowledge like a gateway."""
        mark = None
        with self._cond:
            for item in items:
                if isinstance(item, frame.Frame) and item.fields is not None:
                    mark = self._receive(item) or mark
            self._cond.notify_all()
        if mark is not None and self.acking:
            self.ack(mark)

    def _receive(self, item: frame.Frame) -> int | None:
        body, tag = item.split_tag()
        if not hmac.compare_digest(hmac.new(self.key, body, "sha256").digest(), tag):
            self.bad_tags += 1
            return None
        seq = item.fields["seq"]
        if seq in self.raw:
            self.resends += 1
            if self.raw[seq] != body:
                self.forgeries += 1
        else:
            rec = dict(item.fields, kind=record.KIND_NAMES[item.fields["kind"]])
            self.raw[seq] = body
            self.arrived[seq] = time.monotonic()
            self.records.append(rec)
            self._unread.append(rec)
        if not self.acking:
            return None
        return self.acks.stored(self.node, seq, item.fields["prev"])

    def expect_record(self, kind: str | None = None,
                      where: Callable[[dict], bool] | None = None,
                      timeout: float = 10.0, **fields) -> dict:
        """The next unread record of `kind` whose fields equal `fields` and satisfy
        `where`; records before it that do not match are passed over."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._unread:
                    rec = self._unread.pop(0)
                    if kind is not None and rec["kind"] != kind:
                        continue
                    if any(rec.get(k) != v for k, v in fields.items()):
                        continue
                    if where is None or where(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r["kind"], r["seq"], r.get("code")) for r in self.records[-12:]]
                    want = ", ".join([kind or "record"]
                                     + [f"{k}={v!r}" for k, v in fields.items()])
                    raise ExpectTimeout(
                        f"link {self.url}: no {want} matching within {timeout} s; last"
                        f" records (kind, seq, code): {seen}; frame rejects:"
                        f" {self.decoder.counts}; bad tags: {self.bad_tags}")
                self._cond.wait(min(left, 0.1))

    def seen(self, kind: str, timeout: float = 10.0, **fields) -> dict:
        """A record of `kind` with these fields among all received (read or not), waiting
        for it up to `timeout`; unlike expect_record it consumes nothing."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.records:
                    if rec["kind"] == kind and all(rec.get(k) == v for k, v in fields.items()):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(f"link {self.url}: no {kind} {fields} seen in"
                                        f" {timeout} s among {len(self.records)} records")
                self._cond.wait(min(left, 0.1))

    def expect_event(self, code: str, where: Callable[[dict], bool] | None = None,
                     timeout: float = 10.0) -> dict:
        return self.expect_record("event", where=where, timeout=timeout, code=code)

    def expect_none(self, kind: str, within: float,
                    where: Callable[[dict], bool] | None = None, **fields) -> None:
        """No record of `kind` (with these fields, matching `where`) arrives within
        `within` seconds."""
        try:
            rec = self.expect_record(kind, where=where, timeout=within, **fields)
        except ExpectTimeout:
            return
        raise AssertionError(f"link {self.url}: unexpected {kind} record {rec}")

    def settle(self, quiet: float = 0.5, timeout: float = 15.0) -> None:
        """Wait until no new record has arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, still_since = len(self.records), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if len(self.records) != last:
                last, still_since = len(self.records), time.monotonic()
            elif time.monotonic() - still_since >= quiet:
                return
        raise ExpectTimeout(f"link {self.url}: records kept coming for {timeout} s")

    def skip_unread(self) -> None:
        """Forget what was not read yet (a test that starts from a known point)."""
        with self._cond:
            self._unread.clear()

    def ack(self, seq: int) -> None:
        self.write(frame.ack_frame(self.node, seq, self.key))

    def set_time(self, t_ms: int) -> None:
        self.write(frame.time_frame(self.node, t_ms, self.key))

    def chain(self) -> list[int]:
        """The seqs of the prev chain from the newest record back to the first."""
        by_seq = {r["seq"]: r for r in self.records}
        seq, out = max(by_seq), []
        while seq:
            if seq not in by_seq:
                raise AssertionError(f"record {seq} is missing from the prev chain")
            out.append(seq)
            seq = by_seq[seq]["prev"]
        return out
