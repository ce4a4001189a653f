# Builds a Node from the configuration: the parts every board and the host share.
# Invariant: nothing here touches hardware; drivers are built by the caller (a
# board's main.py, or host.py with simulated instruments) and handed in. Every part
# that measures time gets time.ticks_diff: time.ticks_ms wraps (after 2^30 ms, about
# 12.4 days, on ESP32 and RP2040), so ms are never subtracted directly.

import time

from ..core.clock import Clock
from ..core.gbn import Sender
from ..core.outbox import Outbox
from ..core.producer import Producer
from ..core.seq import SeqCounter
from ..core.store import FileStore
from . import params
from .node import Node


def _mkdir(path):
    try:
        import os

        os.mkdir(path)
    except OSError:
        pass  # exists


def build(cfg, node_id, fw, log=print):
    key = bytes.fromhex(cfg["key"])
    data = cfg["data_dir"]
    _mkdir(data)
    saved = params.load(data, cfg)  # calibration and parameters changed since config.json
    ob = cfg["outbox"]
    outbox = Outbox(data + "/outbox", ob["seg_bytes"], ob["max_bytes"], ob["reserve_bytes"])
    if outbox.damaged_tails:
        log("metro: outbox had %d damaged tail(s), cut" % outbox.damaged_tails)
    seq = SeqCounter(FileStore(data + "/seq.lease"))
    clock = Clock(time.ticks_ms, time.ticks_diff)
    producer = Producer(node_id, key, seq, outbox, clock, log, FileStore(data + "/unstored"))
    ln = cfg["link"]
    sender = Sender(outbox, ln["window"], ln["timeout_ms"], ln["max_timeout_ms"],
                    diff=time.ticks_diff)
    scale = pump = None
    sc = cfg.get("scale")
    if sc:  # imported only when configured: a pump node carries no scale code
        from ..core import weigh
        from ..core.scale import Scale

        cal = sc.get("cal") or {"zero_raw": 0, "span_raw": 1, "span_load": 1}
        scale = Scale(weigh.Calibration(cal["zero_raw"], cal["span_raw"], cal["span_load"]),
                      sc["e"], sc["max"], sc.get("min_e", 20), sc.get("window", 5),
                      sc.get("unit", "g"), time.ticks_diff)
    pc = cfg.get("dispenser")
    if pc:
        from ..core import flow

        pump = flow.Dispenser(pc["kfactor"], pc.get("d", 10), pc.get("idle_ms", 30000),
                              pc.get("max_hz", 2000), time.ticks_diff)
    scan = cfg.get("scanner") or {}
    node = Node(producer, sender, clock, fw, scale, sc and sc["inst"], pump,
                pc and pc["inst"], scan.get("inst"), scan.get("link_window_ms", 60000),
                time.ticks_diff)
    node.params = saved
    return node
