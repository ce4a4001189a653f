# Zero-setting and zero-tracking within the limits of OIML R 76-1 4.5.
#
# - Initial zero-setting at power-up: only within ±10 % of Max of the calibrated zero
#   (a range of 20 % of Max, R 76-1 4.5.1); outside it the scale must not weigh.
# - Semi-automatic zero-setting (the operator's key) and zero-tracking together:
#   within ±2 % of Max of the initial zero (a range of 4 % of Max, R 76-1 4.5.1).
# - Zero-tracking only at stable equilibrium with the indication within ±0.5 e of
#   zero, at most 0.5 e per second (R 76-1 4.5.7).
# All values are fine units (weigh.py). Invariant: `offset` never leaves its range;
# a request that would move it out is refused and says why.
# now_ms is a board's time.ticks_ms(), which wraps: elapsed time is taken only through
# `diff` (time.ticks_diff on a board), never by plain subtraction.


class ZeroError(ValueError):
    pass


def _subtract(new, old):  # a counter that never wraps (tests, CPython)
    return new - old


class ZeroTracker:
    def __init__(self, max_fine, e_fine, rate_e_per_s_x2=1, diff=None):
        self.diff = diff or _subtract
        self.max_fine = max_fine
        self.e_fine = e_fine
        self.rate_x2 = rate_e_per_s_x2  # correction per second, in half intervals
        self.initial = None  # offset set at power-up
        self.offset = 0  # current zero, fine units relative to the calibration
        self._last_ms = None
        self._credit = 0  # tracking allowance earned so far, in fine units × 2000
        self.tracked = 0  # total fine units moved by tracking (the server watches drift)

    def power_up(self, fine, stable):
        if not stable:
            raise ZeroError("zero: scale not stable at power-up")
        if abs(fine) * 10 > self.max_fine:
            raise ZeroError("zero: %d outside the initial range of ±10 %% Max" % fine)
        self.initial = self.offset = fine

    def _check_range(self, offset):
        if self.initial is None:
            raise ZeroError("zero: no initial zero yet")
        if abs(offset - self.initial) * 50 > self.max_fine:
            raise ZeroError("zero: %d outside ±2 %% Max of the initial zero" % offset)

    def set_zero(self, fine, stable):
        """Semi-automatic zero-setting at the operator's request."""
        if not stable:
            raise ZeroError("zero: scale not stable")
        self._check_range(fine)
        self.offset = fine

    def track(self, fine, stable, now_ms):
        """Follow a slow drift of an empty scale; returns the correction made (fine)."""
        last, self._last_ms = self._last_ms, now_ms
        net = fine - self.offset
        if not stable or last is None or 2 * abs(net) > self.e_fine or net == 0:
            self._credit = 0  # allowance is earned only while tracking is allowed
            return 0
        # The allowance accrues across calls, so a node sampling every 10 ms tracks as
        # fast as one sampling every second; capped at one second's worth (4.5.7).
        per_s = self.rate_x2 * self.e_fine * 1000
        self._credit = min(self._credit + self.diff(now_ms, last) * self.rate_x2 * self.e_fine,
                           per_s)
        budget = self._credit // 2000
        step = max(-budget, min(budget, net))
        if step == 0:
            return 0
        try:
            self._check_range(self.offset + step)
        except ZeroError:
            return 0
        self._credit -= abs(step) * 2000
        self.offset += step
        self.tracked += step
        return step
