"""Variable-measure label layouts configured per site, for codes biip has no rules for.

A layout is the 13 positions of the EAN-13 a scale prints, written as a pattern:

    02IIIIIWWWWWC    prefix 02, item 12345, weight 01250 g, check digit: 0212345012505
    23IIIIVPPPPPC    prefix 23, item, price check digit, price 01250 = 12.50

Digits are the prefix the code must start with (02 or 20–29, the GS1 prefixes of
restricted circulation numbers), `I` item reference, `W` net weight in grams, `P` price in
hundredths, `V` a price or weight check digit (read, not verified), `C` the GTIN check
digit (verified by biip like any GTIN's).

Invariant: `parse_layout` accepts a pattern only if it has exactly 13 positions, starts
with a restricted-circulation prefix, ends in C and has one contiguous run of W or of P;
otherwise CodeError names the field `region`. `measure` never guesses: a code whose prefix
is not the layout's gives nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from . import CodeError

_PATTERN = re.compile(r"^(02|2\d)\d*[IWPV]+C$")


@dataclass(frozen=True)
class Layout:
    prefix: str
    field: str  # "W" or "P"
    start: int
    end: int


def is_layout(text: str) -> bool:
    return len(text) == 13 and text[:1] in "02"


def parse_layout(text: str) -> Layout:
    if not _PATTERN.match(text) or len(text) != 13:
        raise CodeError("region", f"not a region nor a 13-position layout such as "
                        f"02IIIIIWWWWWC: {text!r}")
    runs = [(m.group()[0], m.start(), m.end()) for m in re.finditer(r"W+|P+", text)]
    if len(runs) != 1:
        raise CodeError("region", f"layout {text!r} needs one run of W (grams) or P (price)")
    field, start, end = runs[0]
    prefix = text[:len(text) - len(text.lstrip("0123456789"))]
    return Layout(prefix, field, start, end)


def measure(layout: Layout, gtin13: str) -> tuple[int | None, Decimal | None]:
    """(net weight in mg, price) a code carries under the layout; (None, None) when the
    code does not start with the layout's prefix."""
    if len(gtin13) != 13 or not gtin13.startswith(layout.prefix):
        return None, None
    value = int(gtin13[layout.start:layout.end])
    if layout.field == "W":
        return value * 1000, None
    return None, Decimal(value) / 100
