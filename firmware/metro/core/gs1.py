# Barcode text as the scanner sends it: AIM symbology identifier, then data.
#
# ISO/IEC 15424 symbology identifiers: "]" + code character + modifier, e.g. ]E0
# EAN-13, ]E4 EAN-8, ]C1 GS1-128, ]d2 GS1 DataMatrix, ]Q3 GS1 QR, ]e0 GS1 DataBar.
# The GS1 check digit (GS1 General Specifications 7.9) is checked on the node for
# EAN/UPC codes and for the GTIN in AI (01). The raw text, GS (0x1D) separators and
# all, is what the scan record keeps; the server parses the rest.
# Invariant: check() returns None for a code it accepts, else why it refuses it.

GS = 0x1D
GS1_SYMBOLOGIES = ("]C1", "]d2", "]Q3", "]e0", "]J1")


def split_aim(line):
    """(symbology, data) of a scanner line; symbology "" when it carries none."""
    if len(line) >= 3 and line[0] == 0x5D:  # "]"
        return line[:3].decode(), line[3:]
    return "", line


def check_digit_ok(digits):
    """GS1 mod-10 check digit over a string of decimal digits (GTIN-8/12/13/14)."""
    if len(digits) < 2 or not all(48 <= c <= 57 for c in digits):
        return False
    total = 0
    weight = 3
    for c in reversed(digits[:-1]):
        total += (c - 48) * weight
        weight = 4 - weight
    return (10 - total % 10) % 10 == digits[-1] - 48


def check(symbology, data):
    if not data:
        return "code: empty"
    if symbology in ("]E0", "]E4"):
        if len(data) not in (8, 12, 13):
            return "code: EAN/UPC of %d digits" % len(data)
        if not check_digit_ok(data):
            return "code: bad check digit"
    elif symbology in GS1_SYMBOLOGIES and data[:2] == b"01":
        gtin = data[2:16]
        if len(gtin) < 14 or not check_digit_ok(gtin):
            return "code: bad GTIN check digit in AI (01)"
    return None


def _subtract(new, old):  # a counter that never wraps (tests, CPython)
    return new - old


class ScanLinker:
    """Links a scan to the weighing or dispense that follows it within window_ms.
    Times are time.ticks_ms() values, compared through `diff` (time.ticks_diff)."""

    def __init__(self, window_ms=60000, diff=None):
        self.diff = diff or _subtract
        self.window_ms = window_ms
        self._seq = None
        self._at = 0

    def scanned(self, seq, now_ms):
        self._seq = seq
        self._at = now_ms

    def take(self, now_ms):
        """Seq of the scan the next measurement belongs to, or None; used once."""
        seq, self._seq = self._seq, None
        if seq is not None and self.diff(now_ms, self._at) <= self.window_ms:
            return seq
        return None
