# What a weight indicator prints for a load: the lines firmware/metro/drivers/scaleproto.py
# parses, so a rig with an indicator line (rig: indicator) can place a known load too.
#   sics   MT-SICS level 0 "S" reply:      "S S      1250 g"  (stable) / "S D ..." (moving)
#   print  continuous print (A&D style):   "ST,GS,+00001250g" (stable) / "US,GS,..."
# Loads are integers in the indicator's unit (the DUT's base unit), so no decimals are
# printed and nothing is rounded. Pure: runs on CPython and MicroPython.

PROTOCOLS = ("sics", "print")


class LineError(ValueError):
    pass


def line(protocol, load, unit="g", stable=True):
    """The indicator's line for `load` (an integer in `unit`), CR LF terminated."""
    if not isinstance(load, int) or isinstance(load, bool):
        raise LineError("load: an integer in %s" % unit)
    if protocol == "sics":
        text = "S %s %9d %s" % ("S" if stable else "D", load, unit)
    elif protocol == "print":
        text = "%s,GS,%s%08d%s" % ("ST" if stable else "US", "-" if load < 0 else "+",
                                   abs(load), unit)
    else:
        raise LineError("protocol: one of %s" % ", ".join(PROTOCOLS))
    return text.encode() + b"\r\n"
