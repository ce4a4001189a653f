# Converter counts to indications: calibration, rounding to the scale interval e.
#
# Invariant: integers only. Inside the node a mass is kept in tenths of the base
# unit ("fine" values) so that zero tracking and the centre-of-zero test can work in
# quarter intervals (OIML R 76-1 4.5.5, 4.5.7); an indication leaves the node rounded
# to e, half away from zero (R 76-1 3.4: the indication is a multiple of e).

FINE = 10  # fine units per base unit


def div_round(a, b):
    """a / b rounded half away from zero, for b > 0."""
    if b <= 0:
        raise ValueError("divisor must be positive")
    q, r = divmod(abs(a), b)
    if 2 * r >= b:
        q += 1
    return q if a >= 0 else -q


def round_to(value, step):
    """value rounded to a multiple of step (half away from zero)."""
    return step * div_round(value, step)


class Calibration:
    """Linear calibration: `span_raw` counts above `zero_raw` weigh `span_load` units."""

    def __init__(self, zero_raw, span_raw, span_load):
        if span_raw == 0:
            raise ValueError("span_raw: must not be 0")
        if span_load <= 0:
            raise ValueError("span_load: must be positive")
        self.zero_raw = zero_raw
        self.span_raw = span_raw
        self.span_load = span_load

    def fine(self, raw):
        """Counts to fine units (tenths of the base unit), relative to the calibrated zero."""
        num = (raw - self.zero_raw) * self.span_load * FINE
        if self.span_raw > 0:
            return div_round(num, self.span_raw)
        return div_round(-num, -self.span_raw)

    def params(self):
        return {"zero_raw": self.zero_raw, "span_raw": self.span_raw,
                "span_load": self.span_load}


def to_indication(fine, e):
    """A fine value as an indication in the base unit, rounded to e."""
    return div_round(round_to(fine, e * FINE), FINE)
