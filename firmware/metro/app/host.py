# The node on the host: MicroPython unix port, simulated instruments, and a TCP
# socket to the gateway in place of the UART (same frames, same tasks).
#
#   MICROPYPATH=firmware micropython -X heapsize=128k -m metro.app.host CONFIG.json
#
# (From the sources; precompiled as deployed, scale + pump + scanner run in 112k: code
# and names alone take ~83 KiB on the 64-bit unix port. Frozen into the interpreter,
# firmware/frozen/build, they run in 64k: docs/firmware.md "Memory".)
#
# Config as on a board, plus "gateway": {"host", "port"} (or link.kind "mqtt" and
# link.mqtt: net/uplink.py, to a real broker; "ntp" for SNTP), "sim": {"seed", ...} and
# "heap_probe": true to print {"heap": {...}} lines (peak live heap after gc.collect).
# "sim": {"driven": true}: the instruments obey JSON-lines commands on stdin instead of
# simulating a day (sim/driven.py, app/console.py). Console: one {"rec": {...}} line
# per stored record, {"ready": true} once booted; a software watchdog (sim/wdt.py)
# stands in for machine.WDT and ends the process with code 3 (sim/wdt.py EXIT_WDT).

import asyncio
import gc
import sys
import time

from . import tasks
from .echo import echo

# Needed only while booting: unloaded afterwards, because on a small heap every
# kilobyte of bytecode counts (10.7 KiB here; a board may freeze them in flash).
BOOT_ONLY = ("metro.app.config", "metro.app.build", "metro.app.params", "metro.core.fwid",
             "metro.sim.rig")


def _metro_root():
    path = __file__
    return path[: path.rfind("/app/")] if "/app/" in path else "metro"


async def _connection(node, link, health, probe):
    """The TCP link to the gateway, reconnected with back-off for ever. Waiting for the
    gateway counts as a healthy link loop (as an MQTT uplink's, net/uplink.py): a
    gateway that is away must not starve the watchdog, a hung loop must."""
    host, port, period, key = link
    health.register("link", period, 2)
    pause = 100
    while True:
        began = time.ticks_ms()
        try:  # the connect is bounded: a gateway host that is off drops our SYNs
            reader, writer = await asyncio.wait_for_ms(asyncio.open_connection(host, port),
                                                       health.slack_ms)
            node.sender.restart()
            rx = asyncio.create_task(tasks.rx_loop(node, reader, key))
            try:
                await tasks.tx_loop(node, writer, health, period, probe, rx)
            finally:
                rx.cancel()
                writer.close()
        except (OSError, asyncio.TimeoutError):
            pass  # refused (seen at the first write), unreachable, or gone: reconnect
        if time.ticks_diff(time.ticks_ms(), began) > 5000:
            pause = 100  # it was up a while: the gateway is back, reconnect soon
        await health.idle("link", pause)
        pause = min(pause * 2, 5000)


async def _heap_report(probe, node, every_ms):
    while True:
        await asyncio.sleep_ms(every_ms)
        print('{"heap": {"peak_live": %d, "samples": %d, "made": %d, "heap_total": %d}}'
              % (probe.peak_live, probe.samples, node.producer.made,
                 gc.mem_alloc() + gc.mem_free()))


def _boot(path):
    from ..core.fwid import firmware_id
    from ..sim.wdt import reset_cause
    from . import config
    from .build import build

    cfg = config.load(path)
    print("metro host node: %s" % config.redacted(cfg))
    if cfg.get("scale"):  # the simulated cell keeps its sensitivity when the cal changes
        cfg.setdefault("sim", {}).setdefault("cell", dict(cfg["scale"].get("cal") or {}))
    fw, fw_hash = firmware_id(cfg["fw_version"], _metro_root())
    node = build(cfg, bytes.fromhex(cfg["node"]), fw)
    node.producer.echo = echo
    node.power_up(reset_cause(cfg["data_dir"], cfg.get("reset_cause", "HOST")), fw_hash)
    return cfg, node


def _unload(names):
    """Forget modules: out of sys.modules AND off their package, whose attribute (set by
    the import) would otherwise keep the module and all its bytecode alive."""
    for name in names:
        if sys.modules.pop(name, None) is not None:
            dot = name.rfind(".")
            package = sys.modules.get(name[:dot])
            if package is not None and hasattr(package, name[dot + 1:]):
                delattr(package, name[dot + 1:])
    gc.collect()


def compact_gc():
    """Collect after every 1/16 of the heap allocated, not only when it is exhausted.

    MicroPython's allocator takes the first free run from the bottom; collected only
    when full, garbage lies all over the heap and long-lived objects made meanwhile land
    between it, leaving holes too small for a 640-byte module load while 30 KiB are
    free (docs/firmware.md, "Memory"). Frequent small collections keep the live
    objects packed at the bottom and the free space in one piece."""
    gc.threshold(max(4096, (gc.mem_alloc() + gc.mem_free()) // 16))


async def run(path):
    compact_gc()
    cfg, node = _boot(path)
    # Unload the boot-only modules before the run-time ones are imported: their bytecode
    # then takes the room the boot code (and fwid's file reading) left, instead of
    # looking for a hole next to it (a 640-byte MemoryError at 144k came from that).
    _unload(BOOT_ONLY)
    sim = cfg.get("sim", {})
    health = tasks.Health(cfg.get("health_ms", 5000))
    probe = tasks.HeapProbe() if cfg.get("heap_probe") else None
    stim = None
    if sim.get("driven"):
        from ..sim.driven import Stimulus

        stim = Stimulus()
    period = sim.get("period_ms", 10 if stim else 2)
    from ..sim import rig, wdt

    rig.instruments(cfg, node, health, probe, period, stim)
    asyncio.create_task(tasks.status_loop(node, cfg["status_s"]))
    wdt.start(cfg["data_dir"], cfg["wdt_ms"], health)
    if stim:
        from . import console

        asyncio.create_task(stim.loop(health, period))
        asyncio.create_task(console.console_loop(node, sys.stdin, stim.command))
    if probe:
        asyncio.create_task(_heap_report(probe, node, 500))
    key = bytes.fromhex(cfg["key"])
    period = cfg["link"].get("period_ms", 5)
    if cfg["link"]["kind"] == "mqtt":  # a Wi-Fi board's uplink, to a real broker
        from ..net.uplink import Uplink, settings

        uplink = Uplink(node, key, settings(cfg["link"], node.producer.node.hex()), health,
                        period, probe)
        link = None
    else:
        gw = cfg["gateway"]
        link = (gw["host"], gw["port"], period, key)
    ntp = cfg.get("ntp")
    if ntp:
        from ..net.timesync import ntp_loop

        asyncio.create_task(ntp_loop(node, ntp["host"], ntp.get("port", 123),
                                     ntp.get("every_s", 3600), ntp.get("retry_s", 10)))
    cfg = sim = gw = ntp = rig = None  # the configuration is not needed any more: free it
    _unload(BOOT_ONLY)
    print('{"ready": true}')
    if link is None:
        await uplink.run()
    else:
        await _connection(node, link, health, probe)


def main(argv):
    asyncio.run(run(argv[1]))


if __name__ == "__main__":
    main(sys.argv)
