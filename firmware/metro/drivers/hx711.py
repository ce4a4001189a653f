# HX711 24-bit load-cell ADC over its two-wire interface (AVIA HX711 datasheet p. 5).
#
# - DOUT high: no conversion ready. DOUT low: data ready.
# - 24 clock pulses on PD_SCK shift the result out MSB first (read after the rising
#   edge); 1, 2 or 3 more pulses select the NEXT conversion: 25 -> channel A gain 128,
#   26 -> channel B gain 32, 27 -> channel A gain 64.
# - The result is 24-bit two's complement; 0x7FFFFF / 0x800000 mean saturation.
# - PD_SCK high for more than 60 us powers the chip down, so each pulse is kept
#   short with interrupts disabled around it (disable_irq/enable_irq injected).
# Pins are injected (machine.Pin on a board, fakes in tests); so are the timing
# functions, which keeps the module free of machine imports. ticks_ms wraps, so the
# ready timeout is measured with the injected ticks_diff (time.ticks_diff on a board).

PULSES = {128: 25, 32: 26, 64: 27}
SAT_HIGH = 0x7FFFFF
SAT_LOW = -0x800000


def _no_irq():
    return 0


def _irq_back(state):
    pass


def _subtract(new, old):  # a counter that never wraps (tests, CPython)
    return new - old


class HX711:
    def __init__(self, sck, dout, gain=128, ticks_ms=None, sleep_us=None,
                 disable_irq=_no_irq, enable_irq=_irq_back, timeout_ms=500, ticks_diff=None):
        if gain not in PULSES:
            raise ValueError("gain: one of 128, 64 (channel A) or 32 (channel B)")
        self.sck = sck
        self.dout = dout
        self.pulses = PULSES[gain]
        self.ticks_ms = ticks_ms
        self.ticks_diff = ticks_diff or _subtract
        self.sleep_us = sleep_us
        self.disable_irq = disable_irq
        self.enable_irq = enable_irq
        self.timeout_ms = timeout_ms
        self.saturated = False
        sck.value(0)

    def ready(self):
        return self.dout.value() == 0

    def _wait(self):
        if self.ticks_ms is None:
            if not self.ready():
                raise OSError("HX711 not ready")
            return
        start = self.ticks_ms()
        while not self.ready():
            if self.ticks_diff(self.ticks_ms(), start) > self.timeout_ms:
                raise OSError("HX711 does not respond")
            if self.sleep_us:
                self.sleep_us(500)

    def read(self):
        """One conversion as a signed count; OSError if the chip does not answer."""
        self._wait()
        sck, dout = self.sck, self.dout
        value = 0
        for _ in range(24):
            state = self.disable_irq()
            sck.value(1)
            sck.value(0)
            self.enable_irq(state)
            value = (value << 1) | dout.value()
        for _ in range(self.pulses - 24):
            state = self.disable_irq()
            sck.value(1)
            sck.value(0)
            self.enable_irq(state)
        if value & 0x800000:
            value -= 0x1000000
        self.saturated = value in (SAT_HIGH, SAT_LOW)
        if self.saturated:
            raise ValueError("HX711 saturated: %d (input out of range or cable cut)" % value)
        return value

    def power_down(self):
        self.sck.value(0)
        self.sck.value(1)
        if self.sleep_us:
            self.sleep_us(80)  # > 60 us high

    def power_up(self):
        self.sck.value(0)  # the chip resets to channel A, gain 128
