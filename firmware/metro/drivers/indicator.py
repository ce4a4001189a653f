# A weight indicator on a UART as a reading source for core.scale.Scale.
#
# read() returns the latest indication in the base unit (an integer), None when no
# new line has arrived; `stable` is then the indicator's own motion flag for it, which
# the scale honours (a weighing needs both the indicator and the node's window to say
# stable). An overload or underload report raises scaleproto.OutOfRange (its `state`
# becomes an "overload" / "underload" event, app/tasks.py); a garbled line raises
# ProtocolError (a ValueError), so the node records it in an event and goes on.

from .scaleproto import OK, OutOfRange, parse_print, parse_sics

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
        self.stable = False  # until a line says otherwise
        value, stable, state = self.parse(line, self.base)
        if state != OK:
            raise OutOfRange(state)
        self.stable = stable
        return value
