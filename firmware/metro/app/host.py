# The node on the host: MicroPython unix port, simulated instruments, and a TCP
# socket to the gateway in place of the UART (same frames, same tasks).
#
#   MICROPYPATH=firmware micropython -X heapsize=64k -m metro.app.host CONFIG.json
#
# Config as on a board, plus "gateway": {"host", "port"}, "sim": {"seed", ...} and
# "heap_probe": true to print {"heap": {...}} lines (peak live heap after gc.collect).

import asyncio
import gc
import sys

from . import tasks

# Needed only while booting: unloaded afterwards, because under a 64 KiB heap on the
# 64-bit unix port every kilobyte of bytecode counts (a board freezes them in flash).
BOOT_ONLY = ("metro.app.config", "metro.app.build", "metro.core.fwid")


def _metro_root():
    path = __file__
    return path[: path.rfind("/app/")] if "/app/" in path else "metro"


async def _connection(node, cfg, key, health, probe):
    gw = cfg["gateway"]
    period = cfg["link"].get("period_ms", 5)
    pause = 100
    while True:
        try:
            reader, writer = await asyncio.open_connection(gw["host"], gw["port"])
        except OSError:
            await asyncio.sleep_ms(pause)
            pause = min(pause * 2, 5000)
            continue
        pause = 100
        node.sender.restart()
        rx = asyncio.create_task(tasks.rx_loop(node, reader, key))
        try:
            await tasks.tx_loop(node, writer, health, period, probe, rx)
        except OSError:
            pass  # the gateway went away: reconnect
        rx.cancel()
        writer.close()


async def _heap_report(probe, node, every_ms):
    while True:
        await asyncio.sleep_ms(every_ms)
        print('{"heap": {"peak_live": %d, "samples": %d, "made": %d, "heap_total": %d}}'
              % (probe.peak_live, probe.samples, node.producer.made,
                 gc.mem_alloc() + gc.mem_free()))


def _boot(path):
    from ..core.fwid import firmware_id
    from . import config
    from .build import build

    cfg = config.load(path)
    print("metro host node: %s" % config.redacted(cfg))
    fw, fw_hash = firmware_id(cfg["fw_version"], _metro_root())
    node = build(cfg, bytes.fromhex(cfg["node"]), fw)
    node.power_up(cfg.get("reset_cause", "HOST"), fw_hash)
    for name in BOOT_ONLY:
        sys.modules.pop(name, None)
    return cfg, node


async def run(cfg, node):
    key = bytes.fromhex(cfg["key"])
    sim = cfg.get("sim", {})
    seed = sim.get("seed", 1)
    health = tasks.Health()
    probe = tasks.HeapProbe() if cfg.get("heap_probe") else None
    period = sim.get("period_ms", 2)
    if node.scale:
        from ..sim.loadcell import SimLoadCell

        cell = SimLoadCell(seed, max_load=cfg["scale"]["max"], hold=sim.get("hold", 8),
                           empty=sim.get("empty", 8))
        asyncio.create_task(tasks.scale_loop(node, cell, period, health, probe))
    if node.dispenser:
        from ..core.flow import Extender
        from ..sim.pulses import SimPump

        pump = SimPump(seed + 1)
        asyncio.create_task(tasks.flow_loop(node, pump, Extender(16), pump.nozzle,
                                            period * 4, health, pump.step))
    if cfg.get("scanner"):
        from ..sim.scanner import SimScanner

        scanner = SimScanner(seed + 2, sim.get("scan_every", 6), sim.get("bad_every", 0))
        asyncio.create_task(tasks.scan_loop(node, scanner, period * 3, health))
    asyncio.create_task(tasks.status_loop(node, cfg["status_s"]))
    if probe:
        asyncio.create_task(_heap_report(probe, node, 500))
    await _connection(node, cfg, key, health, probe)


def main(argv):
    cfg, node = _boot(argv[1])
    gc.collect()
    asyncio.run(run(cfg, node))


if __name__ == "__main__":
    main(sys.argv)
