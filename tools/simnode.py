# A simulated market-scale node that writes UART frames to stdout.
#
# Runs under the MicroPython unix port (MICROPYPATH=firmware) or CPython, with the
# board's own wire code, so what comes out is byte for byte what a board would send.
# Deterministic: the same arguments give the same bytes under either interpreter.
#
#   micropython tools/simnode.py NODE_HEX KEY_HEX COUNT T0_MS [SEED]

import sys

try:
    from metro.sim.rng import Lcg
    from metro.wire import frame, record
except ImportError:  # CPython, with metrotrace installed
    from metrotrace.firmware.metro.sim.rng import Lcg
    from metrotrace.firmware.metro.wire import frame, record


E = 5  # scale interval, g (class III, Max 15 kg)
TEST_WEIGHT = 10000  # g, reference for check records


def records(node, count, t0, seed):
    """Yield the record bytes of a stall scale's day, `count` records long."""
    rng = Lcg(seed)
    seq = 1
    t = t0
    yield record.make(record.EVENT, node, seq, 0, t, record.TQ_NTP, "scale-1",
                      code="power_up", detail={"reset": "PWRON"})
    while seq < count:
        prev = seq
        seq += 1
        t += 1000 + rng.below(4000)
        roll = rng.below(100)
        if roll < 10:
            yield record.make(record.ZERO, node, seq, prev, t, record.TQ_NTP, "scale-1",
                              indication=0, e=E, unit="g", raw=8388 + rng.below(5))
        elif roll < 15:
            error = (rng.below(3) - 1) * E
            yield record.make(record.CHECK, node, seq, prev, t, record.TQ_NTP, "scale-1",
                              indication=TEST_WEIGHT + error, reference=TEST_WEIGHT, e=E,
                              unit="g", ref_id="TW-10kg-0042")
        elif roll < 35:
            gtin = "2%05d" % rng.below(100000)
            yield record.make(record.SCAN, node, seq, prev, t, record.TQ_NTP, "scanner-1",
                              code=("]E0" + gtin).encode(), symbology="]E0")
        elif roll < 40:
            yield record.make(record.STATUS, node, seq, prev, t, record.TQ_NTP, None,
                              fw="metro-sim 0.1", uptime_s=(t - t0) // 1000,
                              mem_free=40000, backlog=0)
        else:
            net = E * (20 + rng.below(2000))
            yield record.make(record.WEIGHING, node, seq, prev, t, record.TQ_NTP, "scale-1",
                              gross=net, tare=0, net=net, e=E, unit="g",
                              flags=record.F_STABLE)


def write_all(out, data):
    """MicroPython's stream write is one write(2): on a full pty it writes part of the
    frame and returns how much; the rest must follow, or the gateway sees a torn frame."""
    view = memoryview(data)
    while view:
        view = view[out.write(view) or 0:]


def main(argv):
    node = bytes.fromhex(argv[1])
    key = bytes.fromhex(argv[2])
    count = int(argv[3])
    t0 = int(argv[4])
    seed = int(argv[5]) if len(argv) > 5 else 1
    out = sys.stdout.buffer
    for rec in records(node, count, t0, seed):
        write_all(out, frame.record_frame(rec, key))
    out.flush()


if __name__ == "__main__":
    main(sys.argv)
