# The simulated rig of a host run: one simulated instrument per instrument the node
# serves, each driven by the same asyncio task (app/tasks.py) as the real one on a
# board. Autonomous, the instruments simulate a market day on their own (seeded);
# driven (stim given), they obey sim/driven.py's commands and nothing else.

import asyncio

from ..app import tasks


def instruments(cfg, node, health, probe, period, stim):
    sim = cfg.get("sim", {})
    seed = sim.get("seed", 1)
    driven = stim is not None
    if node.scale:
        from ..sim.loadcell import SimLoadCell

        c = sim.get("cell") or {}
        cell = SimLoadCell(seed, c.get("zero_raw", 8400), c.get("span_raw", 42),
                           c.get("span_load", 1), sim.get("noise", 3),
                           sim.get("drift", 0 if driven else 2), cfg["scale"]["max"],
                           sim.get("hold", 8), sim.get("empty", 8), driven)
        asyncio.create_task(tasks.scale_loop(node, cell, period, health, probe))
        if driven:
            stim.cell = cell
    if node.dispenser:
        from ..core.flow import Extender

        if driven:
            from ..drivers.pulse import IrqCounter
            from ..sim.driven import Pulser, SimPin

            pin = SimPin()
            counter = IrqCounter(pin, None)  # counted as on an RP2040 without PIO
            stim.pulser = pump = Pulser(pin)
            task = tasks.flow_loop(node, counter, Extender(30), pump.nozzle, period, health,
                                   pump.step)
        else:
            from ..sim.pulses import SimPump

            pump = SimPump(seed + 1)
            task = tasks.flow_loop(node, pump, Extender(16), pump.nozzle, period * 4,
                                   health, pump.step)
        asyncio.create_task(task)
    if cfg.get("scanner"):
        if driven:
            from ..sim.driven import LineQueue

            stim.scanner = scanner = LineQueue()
        else:
            from ..sim.scanner import SimScanner

            scanner = SimScanner(seed + 2, sim.get("scan_every", 6), sim.get("bad_every", 0))
        asyncio.create_task(tasks.scan_loop(node, scanner, period * (1 if driven else 3),
                                            health))
