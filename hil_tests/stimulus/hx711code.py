# What an HX711 sends for a load: the counts a cell with this zero and sensitivity gives,
# as the 24-bit two's complement word shifted out MSB first on PD_SCK (HX711 datasheet,
# "Serial Interface": 24 bits, then 1 to 3 more pulses select the next gain/channel).
# Pure and integer-only: the same words on CPython and MicroPython.

HX_MAX = 0x7FFFFF
HX_MIN = -0x800000


def counts(load, zero_raw, counts_per_unit):
    """Counts for `load` base units, clamped as the chip saturates (0x7FFFFF/0x800000)."""
    raw = zero_raw + load * counts_per_unit
    return max(HX_MIN, min(HX_MAX, raw))


def word(raw):
    """The 24-bit two's complement word for `raw` counts."""
    return raw & 0xFFFFFF


def left_aligned(raw):
    """The word in the top 24 bits of a 32-bit FIFO entry (PIO shifts out MSB first)."""
    return word(raw) << 8


def decode(bits24):
    """The DUT's view (as metro/drivers/hx711.py decodes it): word -> signed counts."""
    return bits24 - 0x1000000 if bits24 & 0x800000 else bits24
