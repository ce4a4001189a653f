"""A market day, compressed: what the demo tells each simulated board's instruments to do.

One thread per node. Everything reaches the firmware as the stimulus a real instrument
would give it (a load on the cell, pulses from the meter, a line from the scanner) or as a
service-console command (the inspector's check, the stallholder's calibration change);
the records are whatever the firmware makes of it.

- Goods-in: each lot's delivery label is scanned once (received at the market).
- Stall scales, in turn: a sale (scan the crate's code, put 0.2-3 kg on the pan, take it
  off) and an inspector's check (the 10 kg test weight on, `check` on the console, off).
  S2's load cell drifts: from 40 % of the run on, its sensitivity rises at a rate
  that brings the error at 10 kg to the MPE (10 g) by the end of the run: accelerated a
  few thousand times, as the demo says on screen. S3's stallholder changes the span
  calibration a fifth of the way in (a `cal_change` event): it reads 0.3 % heavy since.
- Dispensers: the tanker's delivery note is scanned into tank T1, then fuellings of
  20-60 L at 15 L/s (1500 pulses/s).

Invariant: a driver waits for the node's own record of each step (its console echo) before
the next, so the stimulus never outruns the firmware; a step the node does not confirm
within its timeout is counted as missed and the day goes on.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from metrotrace.tools.demo_nodes import NodeRunner
from metrotrace.tools.demo_scenario import (
    LOTS,
    SCALE_CAL,
    TAMPER_FACTOR_PPM,
    TEST_WEIGHT,
    TEST_WEIGHT_ID,
    delivery_line,
)

MPE_PPM_AT_TEST_WEIGHT = 1000  # 10 g in service at 10 kg, class III, e = 5 g


@dataclass
class Day:
    """Shared state of the day: when it started, how long it lasts, what happened."""

    duration: float
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    goods_received: threading.Event = field(default_factory=threading.Event)
    tank_filled: threading.Event = field(default_factory=threading.Event)
    done: Counter = field(default_factory=Counter)  # step -> count
    missed: Counter = field(default_factory=Counter)  # step not confirmed -> count
    checks_refused: str | None = None  # the firmware's answer when it has no check command
    tampered_at: float | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def drift_start(self) -> float:
        return 0.4 * self.duration

    @property
    def drift_ppm_per_s(self) -> float:
        return MPE_PPM_AT_TEST_WEIGHT / (0.6 * self.duration)

    def drift_ppm(self) -> float:
        return max(0.0, self.elapsed() - self.drift_start) * self.drift_ppm_per_s

    def sleep(self, seconds: float) -> bool:
        """False once the day is over."""
        return not self.stop.wait(seconds)


def _step(day: Day, node: NodeRunner, kind: str, timeout: float, name: str) -> dict | None:
    rec = node.expect(kind, timeout, day.stop)
    if rec is None:
        if not day.stop.is_set():
            day.missed[name] += 1
    else:
        day.done[name] += 1
    return rec


def goods_in(day: Day, node: NodeRunner) -> None:
    for lot in LOTS:
        node.send(scan=lot.receiving_line())
        _step(day, node, "scan", 5, "goods received")
    day.goods_received.set()


def scale(day: Day, node: NodeRunner) -> None:
    rng = random.Random(node.plan.seed)
    behaviour = node.plan.behaviour
    checks = True
    day.goods_received.wait(30)
    while not day.stop.is_set():
        ppm = day.drift_ppm() if behaviour == "drifting" else 0.0

        def on_pan(grams: int, ppm: float = ppm) -> int:  # what the drifted cell is told
            return round(grams * (1 + ppm / 1e6))

        if behaviour == "tampered" and day.tampered_at is None \
                and day.elapsed() >= 0.2 * day.duration:
            span = SCALE_CAL["span_raw"] * (1_000_000 - TAMPER_FACTOR_PPM) // 1_000_000
            node.send(param={"name": "scale.cal.span_raw", "value": span, "by": "stallholder"})
            if _step(day, node, "event", 5, "calibration changed"):
                day.tampered_at = day.elapsed()
        lot = rng.choice(LOTS)
        node.send(scan=lot.sale_line())
        if _step(day, node, "scan", 5, "scans") is None:
            continue
        node.send(load=on_pan(rng.randrange(40, 600) * 5))
        _step(day, node, "weighing", 5, "sales weighed")
        node.send(load=0)
        _step(day, node, "zero", 5, "zero readings")
        day.sleep(rng.uniform(0.3, 1.0))  # the next customer
        if not checks:
            continue
        node.send(load=on_pan(TEST_WEIGHT))
        if _step(day, node, "weighing", 5, "test weight on") is None:
            continue
        refused = len(node.refused)
        node.send(check={"reference": TEST_WEIGHT, "ref_id": TEST_WEIGHT_ID, "by": "inspector"})
        if _step(day, node, "check", 2, "checks") is None and len(node.refused) > refused:
            checks = False  # this firmware has no check command: sales only
            day.checks_refused = node.refused[-1]
        node.send(load=0)
        _step(day, node, "zero", 5, "zero readings")
        day.sleep(rng.uniform(0.2, 0.6))


def pump(day: Day, node: NodeRunner) -> None:
    rng = random.Random(node.plan.seed)
    if node.plan.scanner:  # the tank's delivery is scanned before anything is sold from it
        node.send(scan=delivery_line())
        _step(day, node, "scan", 5, "deliveries")
        day.sleep(0.5)  # past the scanner's link window: fuellings draw from the tank
        day.tank_filled.set()
    else:
        day.tank_filled.wait(30)
    while day.sleep(rng.uniform(0.3, 1.2)):
        litres = rng.randrange(20, 60)
        node.send(nozzle="up")
        node.send(pulses=litres * 100, hz=1500)
        node.send(nozzle="down")
        _step(day, node, "dispense", litres * 100 / 1500 + 5, "fuellings")


ROLES = {"goods_in": goods_in, "scale": scale, "pump": pump}


def start(day: Day, nodes: list[NodeRunner]) -> list[threading.Thread]:
    threads = []
    for node in nodes:
        node.drain()
        t = threading.Thread(target=ROLES[node.plan.role], args=(day, node),
                             name=f"day-{node.plan.hex}", daemon=True)
        t.start()
        threads.append(t)
    return threads
