# A barcode scanner on a UART, simulated: readline() gives what the scanner sends,
# an AIM symbology identifier, the code (GS 0x1D kept), CR LF.
# Codes are GS1: EAN-13 (]E0) and GS1-128 (]C1) with GTIN, lot and net weight.
# Every `bad_every`-th code carries a wrong check digit, to exercise the node.

from .rng import Lcg


def check_digit(body):
    total = 0
    weight = 3
    for c in reversed(body):
        total += (ord(c) - 48) * weight
        weight = 4 - weight
    return str((10 - total % 10) % 10)


class SimScanner:
    def __init__(self, seed=3, every=4, bad_every=0):
        self.rng = Lcg(seed)
        self.every = every  # one scan per this many polls
        self.bad_every = bad_every
        self.made = 0

    def readline(self):
        """One line, or None when nothing was scanned since the last poll."""
        if self.rng.below(self.every):
            return None
        self.made += 1
        body = "95%010d" % self.rng.below(10000000000)
        gtin13 = body + check_digit(body)
        if self.bad_every and self.made % self.bad_every == 0:
            gtin13 = gtin13[:-1] + str((int(gtin13[-1]) + 1) % 10)
        if self.rng.below(2):
            return ("]E0" + gtin13 + "\r\n").encode()
        lot = "L%05d" % self.rng.below(100000)
        grams = "%06d" % (100 + self.rng.below(5000))
        line = "]C101" + "0" + gtin13 + "10" + lot + "\x1d" + "3103" + grams + "\r\n"
        return line.encode()
