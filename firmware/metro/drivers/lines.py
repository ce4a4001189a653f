# Bytes from a UART to whole lines (scanners, weight indicators).
#
# Invariant: a line ends at CR or LF and is handed out without them; every other
# byte is kept, GS (0x1D) included, because GS1 element strings use it as the
# separator. A line longer than max_len is dropped whole and counted, never cut.


class LineReader:
    def __init__(self, max_len=256):
        self.max_len = max_len
        self._buf = bytearray()
        self._overlong = False
        self.dropped = 0

    def feed(self, data):
        """Bytes in, complete lines out (list of bytes)."""
        out = []
        for b in data:
            if b in (0x0D, 0x0A):
                if self._overlong:
                    self.dropped += 1
                elif self._buf:
                    out.append(bytes(self._buf))
                self._buf = bytearray()
                self._overlong = False
            elif not self._overlong:
                self._buf.append(b)
                if len(self._buf) > self.max_len:
                    self._overlong = True
                    self._buf = bytearray()
        return out


class UartLines:
    """readline() over an injected UART (machine.UART on a board), non-blocking."""

    def __init__(self, uart, max_len=256):
        self.uart = uart
        self.reader = LineReader(max_len)
        self._ready = []

    def readline(self):
        if not self._ready:
            data = self.uart.read()
            if data:
                self._ready = self.reader.feed(data)
        return self._ready.pop(0) if self._ready else None
