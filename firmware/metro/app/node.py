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
                 dispenser=None, pump_inst=None, scan_inst=None, link_window_ms=60000,
                 diff=None):
        self.producer = producer
        self.sender = sender
        self.clock = clock
        self.fw = fw
        self.scale = scale
        self.scale_inst = scale_inst
        self.dispenser = dispenser
        self.pump_inst = pump_inst
        self.scan_inst = scan_inst
        self.linker = gs1.ScanLinker(link_window_ms, diff)
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

    def power_up(self, reset_cause, fw_sha256, fw_error=None):
        detail = {"reset": reset_cause, "fw": self.fw, "fw_sha256": fw_sha256}
        if fw_error:
            detail["fw_error"] = fw_error[:120]  # no hash: core/fwid.py says why
        if self.params:
            detail["n"] = self.params["n"]  # the event counter (app/params.py)
        prod = self.producer
        if prod.unstored:  # records lost in earlier runs (core/producer.py)
            detail["unstored"] = prod.unstored
        seq = prod.event("power_up", detail)
        if seq is not None:
            prod.unstored_told = prod.unstored
        return seq

    def weigh(self, raw, now_ms, stable=None):
        """One reading; `stable` is the indicator's own motion flag (None: it has
        none, as an HX711): a weighing then needs both it and core/stable.py."""
        for kind, fields in self.scale.update(raw, now_ms, stable):
            self._emit(kind, self.scale_inst, fields, now_ms)

    def out_of_range(self, state, now_ms):
        """The indicator reports overload or underload instead of a value."""
        for kind, fields in self.scale.out_of_range(state):
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

    def check(self, reference, ref_id=None, inst=None):
        """An inspector's check against a known reference; the seq of the check record.
        A scale: the present stable load against a test weight. A dispenser: its last
        delivery against the proving measure it went into (core/flow.py). `inst` picks
        the instrument on a node with both (default: the scale). Raises ValueError
        (naming why) when the instrument is absent or cannot be checked now."""
        if inst is None:
            inst = self.scale_inst if self.scale is not None else self.pump_inst
        if self.scale is not None and inst == self.scale_inst:
            return self.producer.emit("check", inst, self.scale.check(reference, ref_id))
        if self.dispenser is not None and inst == self.pump_inst:
            seq = self.producer.emit("check", inst, self.dispenser.check(reference, ref_id))
            if seq is not None:  # stored: that delivery has had its check
                self.dispenser.last = None
            return seq
        raise ValueError("check.inst: this node has no instrument %r" % (inst,))

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
        self.clock.now()  # brings uptime_ms up to now, not to the last record made
        fields = {"fw": self.fw, "uptime_s": self.clock.uptime_ms // 1000,
                  "mem_free": mem_free, "backlog": self.producer.outbox.backlog()}
        if signal is not None:
            fields["signal"] = signal
        seq = self.producer.emit("status", None, fields)
        # The status record's fields are fixed by the wire format: the count of records
        # lost to a full reserve goes beside it, in an "unstored" event when it grew.
        self.producer.report_unstored()
        return seq

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
