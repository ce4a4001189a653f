# Weight indicators that print on a UART: the line formats, parsed to integers.
#
# MT-SICS (Mettler Toledo Standard Interface Command Set, level 0, "S"/"SI" replies):
#   "S S     1.234 kg"  stable     "S D     1.230 kg"  dynamic (not stable)
#   "S +"  overload   "S -"  underload   "S I"  busy   "ES"/"ET"/"EL"  errors
# Continuous print (the common "ST,GS,+0001.234kg" form of A&D and many indicators):
#   header ST stable / US unstable / OL overload, then GS gross or NT net, then value.
# Indicators pad the number after its sign ("ST,GS,+  1.234kg"): spaces between the
# sign and the digits are accepted, spaces inside the digits are not.
# Invariant: a reading is (value in the configured base unit as an integer, stable,
# state); anything else raises ProtocolError naming what was wrong, so the node can
# record a "driver_error" event and go on.

OK = "ok"
OVER = "overload"
UNDER = "underload"

SCALE = {"kg": {"g": 1000, "kg": 1, "mg": 1000000}, "g": {"g": 1, "mg": 1000},
         "mg": {"mg": 1}}


class ProtocolError(ValueError):
    pass


class OutOfRange(ProtocolError):
    """The indicator reports overload or underload instead of a value (`state`)."""

    def __init__(self, state):
        super().__init__("scale reports %s" % state)
        self.state = state


def to_units(text, unit, base):
    """Decimal text in `unit` -> integer in `base` (exact, or ProtocolError)."""
    factors = SCALE.get(unit)
    if factors is None or base not in factors:
        raise ProtocolError("unit: %r cannot be given in %s" % (unit, base))
    text = text.strip()
    neg = text[:1] == "-"
    if text[:1] in "+-":
        text = text[1:].lstrip()
    whole, _, frac = text.partition(".")
    if not (whole or frac) or not (whole + frac).isdigit():
        raise ProtocolError("value: not a decimal number: %r" % text)
    scaled = int(whole or "0") * factors[base]
    digits = 10 ** len(frac)
    frac_units = int(frac or "0") * factors[base]
    if frac_units % digits:
        raise ProtocolError("value: %r finer than 1 %s" % (text, base))
    value = scaled + frac_units // digits
    return -value if neg else value


def _text(line):
    if not isinstance(line, bytes):
        return line.strip()
    try:
        return line.decode().strip()
    except UnicodeError:  # line noise (wrong baud rate, a loose wire): not even text
        raise ProtocolError("not a text line: %r" % line[:40])


def parse_sics(line, base="g"):
    text = _text(line)
    parts = text.split()
    if parts[:1] in (["ES"], ["ET"], ["EL"]):
        raise ProtocolError("scale reports error %s" % parts[0])
    if len(parts) < 2 or parts[0] not in ("S", "SI"):
        raise ProtocolError("not an MT-SICS weight reply: %r" % text[:40])
    if parts[1] == "+":
        return 0, False, OVER
    if parts[1] == "-":
        return 0, False, UNDER
    if parts[1] == "I":
        raise ProtocolError("scale busy")
    if parts[1] not in ("S", "D") or len(parts) != 4:
        raise ProtocolError("not an MT-SICS weight reply: %r" % text[:40])
    return to_units(parts[2], parts[3], base), parts[1] == "S", OK


def parse_print(line, base="g"):
    text = _text(line)
    parts = text.split(",")
    if len(parts) != 3 or parts[0] not in ("ST", "US", "OL") or parts[1] not in ("GS", "NT"):
        raise ProtocolError("not a continuous-print line: %r" % text[:40])
    if parts[0] == "OL":
        return 0, False, OVER
    field = parts[2].strip()
    i = len(field)
    while i and field[i - 1].isalpha():
        i -= 1
    return to_units(field[:i], field[i:], base), parts[0] == "ST", OK
