# A weight indicator on a UART as a reading source for core.scale.Scale.
#
# read() returns the latest indication in the base unit (an integer), None when no
# new line has arrived, and raises ProtocolError (a ValueError) for a garbled line
# or an overload report, so the node records the line in an event and goes on.

from .scaleproto import OK, ProtocolError, parse_print, parse_sics

PARSERS = {"sics": parse_sics, "print": parse_print}


class Indicator:
    def __init__(self, lines, protocol, base="g"):
        if protocol not in PARSERS:
            raise ValueError("scale.source: one of hx711, sics, print")
        self.lines = lines
        self.parse = PARSERS[protocol]
        self.base = base
        self.stable = False

    def read(self):
        line = self.lines.readline()
        if line is None:
            return None
        value, stable, state = self.parse(line, self.base)
        if state != OK:
            raise ProtocolError("scale reports %s" % state)
        self.stable = stable
        return value
