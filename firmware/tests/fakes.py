# Fake buses that behave like the chips, for driver tests under both interpreters.


class FakeHX711:
    """The HX711's side of PD_SCK/DOUT: shifts a conversion out MSB first on rising
    edges, takes 25-27 pulses, sets the next gain from the pulse count, powers down
    when PD_SCK stays high for more than 60 us (time given by `now_us`)."""

    def __init__(self, conversions):
        self.conversions = list(conversions)  # signed 24-bit values, in order
        self.gain = 128
        self.gains_used = []
        self.powered = True
        self.now_us = 0
        self._bits = None
        self._pulses = 0
        self._high_since = None
        self.errors = 0
        self.sck = _Pin(self._clock)
        self.dout = _Pin(None, self._dout)

    def _dout(self):
        if not self.powered or (self._bits is None and not self.conversions):
            return 1
        if self._bits is None:
            return 0  # ready
        if self._pulses == 0 or self._pulses > 24:
            return 1 if self._pulses > 24 else 0
        return (self._bits >> (24 - self._pulses)) & 1

    def _clock(self, level):
        if level:
            self._high_since = self.now_us
            if not self.powered:
                return
            if self._bits is None:
                if not self.conversions:
                    return
                self._bits = self.conversions.pop(0) & 0xFFFFFF
                self.gains_used.append(self.gain)
                self._pulses = 0
            self._pulses += 1
        else:
            if self._high_since is not None and self.now_us - self._high_since > 60:
                self.powered = False  # the chip resets: a conversion being read is lost
                self._bits = None
            self._high_since = None

    def settle(self):
        """End of a read: the pulses past 24 chose the next gain (datasheet p. 5)."""
        if self._bits is not None:
            if 25 <= self._pulses <= 27:
                self.gain = {25: 128, 26: 32, 27: 64}[self._pulses]
            else:
                self.errors += 1
            self._bits = None
            self._pulses = 0

    def wake(self):
        self.powered = True
        self.gain = 128


class _Pin:
    def __init__(self, on_write=None, on_read=None):
        self.on_write = on_write
        self.on_read = on_read
        self.level = 0

    def value(self, v=None):
        if v is None:
            return self.on_read() if self.on_read else self.level
        self.level = v
        if self.on_write:
            self.on_write(v)
        return None


class FakeUart:
    """read() hands out the chunks in order (None: nothing arrived); an exception
    among them is raised instead, as a UART whose driver fails."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def read(self):
        chunk = self.chunks.pop(0) if self.chunks else None
        if isinstance(chunk, Exception):
            raise chunk
        return chunk


class FakeIrqPin:
    def __init__(self):
        self.handler = None

    def irq(self, handler=None, trigger=None):
        self.handler = handler

    def pulse(self, n):
        for _ in range(n):
            self.handler(self)


# A board's time.ticks_ms() wraps at 2^30 ms (ESP32, RP2040): ticks_diff and ticks_add
# with MicroPython's semantics, for tests that cross the wrap on any interpreter.
TICKS_PERIOD = 1 << 30


def ticks_diff(new, old):
    d = (new - old) & (TICKS_PERIOD - 1)
    return d - TICKS_PERIOD if d >= TICKS_PERIOD // 2 else d


def ticks_add(t, ms):
    return (t + ms) & (TICKS_PERIOD - 1)
