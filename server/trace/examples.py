"""Two small networks with known answers (tests, docs, `metrotrace trace demo` data).

Invariant: the figures in the docstrings are what forward, backward and mass-balance
queries must return for these events; tests pin them on SQLite and PostgreSQL.
"""

from __future__ import annotations

from .build import Builder
from .netgen import lot_urn, sgln, sscc

KG, L = 1_000_000, 1000  # base units: mg, mL
A, B = lot_urn(1, "A"), lot_urn(2, "B")
X, Y = sscc(1), sscc(2)
P1, P2, D1, M1, M2 = sgln("P", 1), sgln("P", 2), sgln("D", 1), sgln("M", 1), sgln("M", 2)
S1, S2, S3 = "urn:epc:id:giai:4012345.S1", "urn:epc:id:giai:4012345.S2", \
    "urn:epc:id:giai:4012345.S3"


def food_events():
    """Two lots; pallet X mixes both and goes to M1, pallet Y holds only A and goes to M2."""
    b = Builder("known-food")
    return [
        b.commission(1, A, 100 * KG, "mass", P1), b.commission(2, B, 50 * KG, "mass", P2),
        b.move(3, "shipping", P1, [(A, 100 * KG, "mass")]),
        b.move(4, "receiving", D1, [(A, 100 * KG, "mass")]),
        b.move(5, "shipping", P2, [(B, 50 * KG, "mass")]),
        b.move(6, "receiving", D1, [(B, 50 * KG, "mass")]),
        b.pack(10, X, [(A, 40 * KG, "mass"), (B, 20 * KG, "mass")], D1),
        b.pack(11, Y, [(A, 60 * KG, "mass")], D1),
        b.move(20, "shipping", D1, epcs=(X,)), b.move(21, "receiving", M1, epcs=(X,)),
        b.unpack(22, X, M1),
        b.move(30, "shipping", D1, epcs=(Y,)), b.move(31, "receiving", M2, epcs=(Y,)),
        b.unpack(32, Y, M2),
        b.sell(100, A, 1_500_000, "mass", M1, S1, "0a01", 7),
        b.sell(101, B, 2 * KG, "mass", M1, S2, "0a01", 8),
        b.sell(102, A, 3 * KG, "mass", M2, S3, "0b02", 9),
        b.count_stock(200, A, 38 * KG, "mass", M1),
    ]


def tank_events():
    b = Builder("known-tank")
    F1, F2 = lot_urn(800, "F1"), lot_urn(800, "F2")
    MIX1, MIX2 = lot_urn(900, "MIX1"), lot_urn(900, "MIX2")
    R, T, N = sgln("R", 0), sgln("T", 1), "urn:epc:id:giai:4012345.N1"
    events = [
        b.commission(1, F1, 10_000 * L, "volume", R), b.commission(2, F2, 8000 * L, "volume", R),
        b.move(3, "shipping", R, [(F1, 10_000 * L, "volume")]),
        b.move(4, "receiving", T, [(F1, 10_000 * L, "volume")]),
        b.transform(10, [(F1, 10_000 * L, "volume")], [(MIX1, 10_000 * L, "volume")], T),
        b.sell(11, MIX1, 100 * L, "volume", T, N, "f1", 1, step="dispensing"),
        b.move(12, "shipping", R, [(F2, 8000 * L, "volume")]),
        b.move(13, "receiving", T, [(F2, 8000 * L, "volume")]),
        b.transform(20, [(F2, 8000 * L, "volume"), (MIX1, 9900 * L, "volume")],
                    [(MIX2, 17_900 * L, "volume")], T),
        b.sell(21, MIX2, 200 * L, "volume", T, N, "f1", 2, step="dispensing"),
    ]
    return events, (F1, F2, MIX1, MIX2, T)
