# A load cell behind an HX711, simulated: what HX711.read() would return.
#
# Counts = zero offset + load * counts_per_unit + noise + a slow drift of the zero.
# A market stall's day: the pan is empty, goods are put on (a few samples of
# settling overshoot), stay while the indication settles, are taken off again.
# Driven (sim/driven.py): no day of its own; `load` is what the test placed.
# Values stay within the HX711's 24-bit two's complement range.

from .rng import Lcg

HX_MAX = 0x7FFFFF
HX_MIN = -0x800000


class SimLoadCell:
    def __init__(self, seed=1, zero_raw=8400, span_raw=42, span_load=1, noise=3,
                 drift_per_ksample=2, max_load=15000, hold=8, empty=8, driven=False):
        self.rng = Lcg(seed)
        self.zero_raw = zero_raw
        self.span_raw = span_raw  # counts for span_load units: the cell's sensitivity
        self.span_load = span_load
        self.driven = driven
        self.noise = noise
        self.drift_per_ksample = drift_per_ksample
        self.max_load = max_load
        self.hold = hold
        self.empty = empty
        self.samples = 0
        self.load = 0
        self._left = empty
        self._settle = 0
        self.fail = 0  # tests: the next n reads raise OSError, like a cut cable

    def _next_phase(self):
        if self.load:
            self.load = 0
            self._left = self.empty + self.rng.below(4)
        else:
            self.load = 100 + self.rng.below(self.max_load // 2)
            self._left = self.hold + self.rng.below(4)
            self._settle = 3

    def read(self):
        if self.fail:
            self.fail -= 1
            raise OSError("HX711 does not respond")
        self.samples += 1
        if not self.driven:
            self._left -= 1
            if self._left <= 0:
                self._next_phase()
        load = self.load
        if self._settle:
            self._settle -= 1
            load += load // (4 - self._settle + 1)  # overshoot while the pan swings
        drift = self.samples * self.drift_per_ksample // 1000
        raw = self.zero_raw + drift + load * self.span_raw // self.span_load
        raw += self.rng.noise(self.noise)
        return max(HX_MIN, min(HX_MAX, raw))
