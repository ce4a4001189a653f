# Fuel dispenser transactions from a flow meter's pulses.
#
# - Hardware counters wrap (ESP32 PCNT: 16 bits): Extender turns successive readings
#   into a monotonic total and is never reset mid-transaction (research/iot.md §4.3).
# - K-factor is pulses per 1000 L (docs/protocol.md, dispense key 10), so
#   volume_mL = pulses * 10^6 / K, rounded half up, then to the interval d.
# - A transaction starts when the nozzle is lifted (or, without a nozzle switch, at
#   the first pulse) and ends when it is hung up or after `idle_ms` without a pulse.
# - A pulse rate above `max_hz` is not physical for the meter: the transaction is
#   kept (its pulses are real counts) but flagged, and an event says so. The check
#   allows one pulse and one millisecond per poll: a count read between two edges
#   and a ms clock read beside it are each up to one unit off, which at exactly the
#   rated flow and a short poll would otherwise look like an excess.
# - A check against a proving measure (a standard capacity measure, OIML R 117-2):
#   the inspector delivers into the measure, hangs up, reads the measure and enters
#   that volume; check() pairs it with the delivery just ended (volume as indicated,
#   pulses as raw counts). Each delivery can be checked once, never while running.
# - now_ms is a board's time.ticks_ms(), which wraps (2^30 ms, ~12.4 days): elapsed
#   time is taken only through `diff` (time.ticks_diff on a board).
# Invariant: integers only; every pulse counted between start and end is in exactly
# one transaction.

from .weigh import div_round, round_to

FLAG_IDLE_END = 1  # ended by the idle timeout, not by the nozzle
FLAG_RATE = 2  # a pulse rate above max_hz was seen


def _subtract(new, old):  # a counter that never wraps (tests, CPython)
    return new - old


def to_millilitres(pulses, kfactor):
    if kfactor <= 0:
        raise ValueError("kfactor: must be positive")
    return div_round(pulses * 1000000, kfactor)


class Extender:
    """Wrapping hardware count -> monotonic total."""

    def __init__(self, bits=16):
        self.mod = 1 << bits
        self.last = None
        self.total = 0

    def update(self, hw):
        hw %= self.mod
        if self.last is not None:
            self.total += (hw - self.last) % self.mod
        self.last = hw
        return self.total


class Dispenser:
    def __init__(self, kfactor, d=10, idle_ms=30000, max_hz=2000, diff=None):
        self.diff = diff or _subtract
        self.kfactor = kfactor
        self.d = d
        self.idle_ms = idle_ms
        self.max_hz = max_hz
        self.active = False
        self._start_pulses = 0
        self._last_pulses = 0
        self._last_ms = 0
        self._last_pulse_ms = 0
        self.t_start = 0
        self.flags = 0
        self.last = None  # (volume, pulses) of the last delivery, until it is checked

    def update(self, now_ms, total, nozzle=None, wall_ms=0):
        """One poll. Returns (kind, fields) records to make: dispense or event."""
        out = []  # type: list
        rate_dt = self.diff(now_ms, self._last_ms)
        moved = total - self._last_pulses
        self._last_ms = now_ms
        self._last_pulses = total
        if moved:
            self._last_pulse_ms = now_ms
        started = False
        if not self.active:
            if not (nozzle or (nozzle is None and moved)):
                return out
            # The pulses since the last poll came after the lift (or are the first
            # ones): no flow passes a hung-up nozzle, so they belong to this one.
            self.active = started = True
            self.flags = 0
            self._start_pulses = total - moved
            self._last_pulse_ms = now_ms
            self.t_start = wall_ms
        if rate_dt > 0 and (moved - 1) * 1000 > self.max_hz * (rate_dt + 1):
            if not self.flags & FLAG_RATE:
                out.append(("event", {"code": "pulse_rate", "detail": {
                    "pulses": moved, "ms": rate_dt, "max_hz": self.max_hz}}))
            self.flags |= FLAG_RATE
        if started:
            return out
        if nozzle is False:
            out.append(("dispense", self._finish(total, 0, wall_ms)))
        elif self.diff(now_ms, self._last_pulse_ms) >= self.idle_ms:
            out.append(("dispense", self._finish(total, FLAG_IDLE_END, wall_ms)))
        return out

    def _finish(self, total, flag, wall_ms):
        self.active = False
        pulses = total - self._start_pulses
        volume = round_to(to_millilitres(pulses, self.kfactor), self.d)
        fields = {"volume": volume, "pulses": pulses, "kfactor": self.kfactor,
                  "t_start": self.t_start, "unit": "mL", "d": self.d}
        if self.flags | flag:
            fields["flags"] = self.flags | flag
        self.last = (volume, pulses)
        return fields

    def check(self, reference, ref_id=None):
        """The last delivery against the proving measure's reading (mL): the fields
        of a check record. Raises ValueError while a dispense runs or when there is no
        unchecked delivery. The caller sets `last` to None once the record is stored."""
        if self.active:
            raise ValueError("check: a dispense is running; hang up the nozzle first")
        if self.last is None:
            raise ValueError("check: no delivery to check (none since power-up, or "
                             "already checked)")
        volume, pulses = self.last
        fields = {"indication": volume, "reference": reference, "e": self.d, "unit": "mL",
                  "raw": pulses}
        if ref_id:
            fields["ref_id"] = ref_id
        return fields
