# Stable equilibrium: the indication may be used only once the load has settled.
#
# OIML R 76-1 4.4.2 / A.4.12: printing or storing a weighing result is allowed only
# at stable equilibrium. Here: the last `window` samples all lie within ±band of the
# middle of their range (band = 1 e by default, in fine units of weigh.py).
# Invariant: stable is False until `window` samples have been seen since the last
# reset(), and any sample outside the band clears it at once.


class StabilityDetector:
    def __init__(self, window, band):
        if window < 2:
            raise ValueError("window: at least 2 samples")
        if band < 0:
            raise ValueError("band: must not be negative")
        self.window = window
        self.band = band
        self._buf = []
        self.stable = False

    def update(self, value):
        buf = self._buf
        buf.append(value)
        if len(buf) > self.window:
            buf.pop(0)
        self.stable = len(buf) == self.window and max(buf) - min(buf) <= 2 * self.band
        return self.stable

    def mean(self):
        """Integer mean of the window (what a stable reading reports)."""
        return sum(self._buf) // len(self._buf) if self._buf else 0

    def reset(self):
        self._buf = []
        self.stable = False
