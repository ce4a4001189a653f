# The node: instrument readings in, records out, acknowledgements and time in.
#
# Synchronous and free of I/O: the asyncio tasks (tasks.py) call one method per
# reading or frame, so the same object runs under tests without a loop.
# Invariants: a weighing or dispense carries `link` only to a scan made just before
# it (gs1.ScanLinker); a bad reading or a refused code is an event, never a crash;
# only frames that pass wire.frame.parse_control (tagged with the node key) can make
# the node forget records or set its clock.

from ..core import gs1
from ..core.clock import TQ_GATEWAY
from ..wire import frame as wire_frame


class Node:
    def __init__(self, producer, sender, clock, fw, scale=None, scale_inst=None,
                 dispenser=None, pump_inst=None, scan_inst=None, link_window_ms=60000):
        self.producer = producer
        self.sender = sender
        self.clock = clock
        self.fw = fw
        self.scale = scale
        self.scale_inst = scale_inst
        self.dispenser = dispenser
        self.pump_inst = pump_inst
        self.scan_inst = scan_inst
        self.linker = gs1.ScanLinker(link_window_ms)
        self.rejects = 0  # control frames refused
        self.errors = {}  # driver error counts by source
        self.params = None  # app.params.load(): saved parameters and the event counter n

    def _emit(self, kind, inst, fields, now_ms):
        if kind in ("weighing", "dispense"):
            link = self.linker.take(now_ms)
            if link is not None:
                fields["link"] = link
        if kind == "event":
            return self.producer.emit("event", inst, fields)
        return self.producer.emit(kind, inst, fields)

    def power_up(self, reset_cause, fw_sha256):
        detail = {"reset": reset_cause, "fw": self.fw, "fw_sha256": fw_sha256}
        if self.params:
            detail["n"] = self.params["n"]  # the event counter (app/params.py)
        return self.producer.event("power_up", detail)

    def weigh(self, raw, now_ms):
        for kind, fields in self.scale.update(raw, now_ms):
            self._emit(kind, self.scale_inst, fields, now_ms)

    def flow(self, total, nozzle, now_ms):
        wall, _ = self.clock.now()
        for kind, fields in self.dispenser.update(now_ms, total, nozzle, wall):
            self._emit(kind, self.pump_inst, fields, now_ms)

    def scanned(self, line, now_ms):
        line = line.rstrip(b"\r\n")
        if not line:
            return None
        symbology, data = gs1.split_aim(line)
        why = gs1.check(symbology, data)
        if why:
            return self.producer.event("scan_rejected", {"why": why, "code": line[:64]})
        seq = self.producer.emit("scan", self.scan_inst,
                                 {"code": line, "symbology": symbology or "]X0"})
        if seq is not None:
            self.linker.scanned(seq, now_ms)
        return seq

    def check(self, reference, ref_id=None):
        """An inspector's check: the present stable load against a known reference
        (a test weight); the seq of the check record. Raises ValueError when the scale
        is not stable or the node has no scale."""
        if self.scale is None:
            raise ValueError("check: this node has no scale")
        return self.producer.emit("check", self.scale_inst, self.scale.check(reference, ref_id))

    def driver_error(self, source, err):
        """A failing driver: one event per error streak, counted, and a retry."""
        n = self.errors.get(source, 0) + 1
        self.errors[source] = n
        if n == 1 or n % 100 == 0:
            self.producer.event("driver_error", {"what": source, "why": str(err)[:80],
                                                 "count": n})

    def driver_ok(self, source):
        self.errors[source] = 0

    def status(self, mem_free, signal=None):
        fields = {"fw": self.fw, "uptime_s": self.clock.uptime_ms // 1000,
                  "mem_free": mem_free, "backlog": self.producer.outbox.backlog()}
        if signal is not None:
            fields["signal"] = signal
        return self.producer.emit("status", None, fields)

    def control(self, frame, key, now_ms):
        """A frame from the gateway: an acknowledgement or the time."""
        value = wire_frame.parse_control(frame, self.producer.node, key)
        if isinstance(value, wire_frame.Reject):
            self.rejects += 1
            return
        if frame.type == wire_frame.ACK:
            for event in self.sender.acked(value, now_ms):
                self.producer.event(event["code"], event["detail"])
        elif frame.type == wire_frame.TIME:
            self.set_time(value, TQ_GATEWAY)

    def set_time(self, utc_ms, tq):
        """The gateway (tq 2) or NTP (tq 1) says the time: steps are audited."""
        t, old_tq = self.clock.now()
        if tq != old_tq or abs(utc_ms - t) > 1000:  # log steps, not jitter
            self.producer.event("clock_set", self.clock.set(utc_ms, tq))
