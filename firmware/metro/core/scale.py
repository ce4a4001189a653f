# A weighing instrument's logic: counts in, weighing / zero records and events out.
#
# Invariant: a weighing is produced only at stable equilibrium (R 76-1 4.4.2), once
# per load, with a net of at least Min; gross, tare and net are multiples of e.
# The load must leave (indication below Min) or change by at least Min before the
# next weighing. When a removed load leaves the scale at centre of zero, a zero
# record with the raw counts goes out so the server can watch zero drift.
# Tare (R 76-1 4.6) is taken only at stable equilibrium and is a multiple of e.
# An indicator that has its own motion detection (MT-SICS "S D", print "US") vetoes
# stability: equilibrium is stable only when the node's window AND the indicator agree.
# An indicator's overload/underload report (no value) is one event per episode and
# restarts the stability window, so no weighing is built from readings before it.

from . import weigh
from .stable import StabilityDetector
from .zero import ZeroError, ZeroTracker

F_STABLE = 1
F_ZERO = 2
F_TARE_PRESET = 4
F_OVERLOAD = 8
F_UNDERLOAD = 16


class Scale:
    def __init__(self, cal, e, max_load, min_e=20, window=5, unit="g", diff=None):
        self.cal = cal
        self.e = e
        self.unit = unit
        self.max_load = max_load
        self.min_load = min_e * e
        ef = e * weigh.FINE
        self.stability = StabilityDetector(window, ef)
        self.zero = ZeroTracker(max_load * weigh.FINE, ef, diff=diff)
        self.tare = 0
        self.tare_flags = 0
        self.last = None  # net of the last weighing, None once the load has left
        self.overloaded = None  # None, or the out-of-range state reported once
        self.await_zero = False  # a load left: report the zero it leaves behind
        self.raw = 0
        self.gross_fine = 0
        self.stable = False  # the last update's verdict: window and indicator agree

    def update(self, raw, now_ms, device_stable=None):
        """One converter sample -> list of (kind, fields) for the records to make.
        device_stable: the indicator's own flag; None when the source has none."""
        self.raw = raw
        fine = self.cal.fine(raw)
        stable = self.stability.update(fine) and device_stable is not False
        self.stable = stable
        out = []
        if self.zero.initial is None:
            if stable:
                try:
                    self.zero.power_up(self.stability.mean(), True)
                    out.append(("zero", self._zero_fields()))
                except ZeroError as err:
                    out.append(("event", {"code": "zero_range", "detail": {"why": str(err)}}))
                    self.stability.reset()
            return out
        if stable and self.last is None:
            self.zero.track(self.stability.mean(), True, now_ms)
        self.gross_fine = (self.stability.mean() if stable else fine) - self.zero.offset
        gross = weigh.to_indication(self.gross_fine, self.e)
        if gross > self.max_load + 9 * self.e:  # R 76-1 4.2.3: blank above Max + 9 e
            if self.overloaded != "overload":
                self.overloaded = "overload"
                out.append(("event", {"code": "overload", "detail": {"gross": gross}}))
            return out
        self.overloaded = None
        net = gross - self.tare
        if self.last is not None and net < self.min_load:
            self.last = None  # load removed
            self.await_zero = True
        if self.await_zero and stable and self._centre_of_zero():
            self.await_zero = False
            out.append(("zero", self._zero_fields()))
        if not stable or net < self.min_load:
            return out
        if self.last is None or abs(net - self.last) >= self.min_load:
            self.last = net
            self.await_zero = False
            out.append(("weighing", self.indication(gross, net, stable)))
        return out

    def out_of_range(self, state):
        """The indicator reports "overload" or "underload" instead of a value."""
        self.stability.reset()
        self.stable = False
        if state == self.overloaded:
            return []
        self.overloaded = state
        return [("event", {"code": state, "detail": {"by": "indicator"}})]

    def _centre_of_zero(self):
        return 4 * abs(self.gross_fine - self.tare * weigh.FINE) <= self.e * weigh.FINE

    def indication(self, gross, net, stable):
        flags = self.tare_flags | (F_STABLE if stable else 0)
        if self._centre_of_zero():
            flags |= F_ZERO
        if gross < -20 * self.e:
            flags |= F_UNDERLOAD
        return {"gross": gross, "tare": self.tare, "net": net, "e": self.e,
                "unit": self.unit, "flags": flags, "raw": self.raw}

    def _zero_fields(self):
        ind = weigh.to_indication(self.gross_fine, self.e)
        return {"indication": ind, "e": self.e, "unit": self.unit, "raw": self.raw}

    def take_tare(self):
        """Tare what is on the receptor now (R 76-1 4.6.1); only when stable."""
        if not self.stable:
            raise ZeroError("tare: scale not stable")
        self.tare = weigh.to_indication(self.gross_fine, self.e)
        self.tare_flags = 0

    def preset_tare(self, value):
        if value < 0 or value > self.max_load:
            raise ValueError("tare: %d outside 0..Max" % value)
        self.tare = weigh.round_to(value, self.e)
        self.tare_flags = F_TARE_PRESET

    def set_zero(self):
        self.zero.set_zero(self.stability.mean(), self.stable)

    def check(self, reference, ref_id=None):
        """A check reading of the present (stable) load against a known reference."""
        if not self.stable or self.overloaded:
            raise ZeroError("check: scale not stable")
        fields = {"indication": weigh.to_indication(self.gross_fine, self.e),
                  "reference": reference, "e": self.e, "unit": self.unit, "raw": self.raw}
        if ref_id:
            fields["ref_id"] = ref_id
        return fields
