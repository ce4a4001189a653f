"""Synthetic supply networks with a seed, for tests and benchmarks.

Invariant: the same seed and sizes give the same events (IDs included) in causal order —
every object is commissioned, produced or packed before any event consumes it — so the
stream captures with unknown objects refused, and every holder's mass balance closes
(held = what is physically left). Two shapes:

- `food`: producers commission lots → distributors receive them and pack mixed pallets
  (two lots each) → markets receive and unpack the pallets → stalls sell portions on
  their scales.
- `fuel`: refinery batches → `layers` of tank farms → station tanks → dispenses on
  nozzles. Every delivery into a tank is a TransformationEvent mixing the tank's current
  content with the delivery; every dispense draws from the tank's current mix. Many layers
  and deliveries make the heavy-blending case (one batch reaches thousands of mixes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .build import Builder
from .epcis import Event

CP = "4012345"  # a company prefix for generated GTINs / SSCCs / GLNs


def sgln(kind: str, n: int) -> str:
    return f"urn:epc:id:sgln:{CP}.{kind}{n}.0"


def lot_urn(item: int, lot: str) -> str:
    return f"urn:epc:class:lgtin:{CP}.{item:06d}.{lot}"


def sscc(n: int) -> str:
    return f"urn:epc:id:sscc:{CP}.{n:010d}"


def instrument(site: str, n: int) -> str:
    return f"urn:epc:id:giai:{CP}.{site}-{n}"


@dataclass
class Network:
    events: list[Event] = field(default_factory=list)
    lots: list[str] = field(default_factory=list)  # trace starting points (raw lots)
    leaves: list[str] = field(default_factory=list)  # what sales draw from (for backward)
    sales: int = 0


def food(seed: int, lots: int, pallets_per_lot: int = 4, sales_per_portion: int = 8,
         producers: int = 50, distributors: int = 20, markets: int = 200,
         stalls: int = 10) -> Network:
    rng = random.Random(seed)
    b = Builder(f"food-{seed}")
    net = Network()
    t = 1_700_000_000_000
    sale_g = 250  # a sale: 250 g; a portion: sales_per_portion sales
    portion = sale_g * 1000 * sales_per_portion  # mg
    pallet_no = 0
    for pair in range(0, lots - 1, 2):
        dist = sgln("D", rng.randrange(distributors))
        pair_lots = []
        for lot_no in (pair, pair + 1):
            urn = lot_urn(lot_no % 997, f"L{lot_no}")
            producer = sgln("P", rng.randrange(producers))
            total = portion * pallets_per_lot
            t += 1000
            net.events.append(b.commission(t, urn, total, "mass", producer,
                                           ilmd={"example:producer": producer}))
            net.events.append(b.move(t + 10, "shipping", producer, [(urn, total, "mass")]))
            net.events.append(b.move(t + 20, "receiving", dist, [(urn, total, "mass")]))
            net.lots.append(urn)
            pair_lots.append(urn)
        for _ in range(pallets_per_lot):
            pallet_no += 1
            pallet = sscc(pallet_no)
            market = rng.randrange(markets)
            where = sgln("M", market)
            content = [(u, portion, "mass") for u in pair_lots]
            t += 100
            net.events.append(b.pack(t, pallet, content, dist))
            net.events.append(b.move(t + 10, "shipping", dist, epcs=(pallet,)))
            net.events.append(b.move(t + 20, "receiving", where, epcs=(pallet,)))
            net.events.append(b.unpack(t + 30, pallet, where))
            for urn in pair_lots:
                for k in range(sales_per_portion):
                    stall = rng.randrange(stalls)
                    net.events.append(b.sell(t + 40 + k, urn, sale_g * 1000, "mass", where,
                                             instrument(f"M{market}", stall),
                                             f"{market:04x}{stall:02x}", pallet_no * 64 + k))
                    net.sales += 1
                net.leaves.append(urn)
    return net


def fuel(seed: int, batches: int, layers: int = 2, tanks: int = 20, dispenses: int = 4,
         fan_in: int = 1, stations_per_tank: int = 1) -> Network:
    """`batches` refinery batches flow down `layers` of tanks (`tanks` per layer); each
    delivery takes a tank's current mix to `fan_in` random tanks of the next layer; the
    last layer's tanks dispense `dispenses` times from each new mix."""
    rng = random.Random(seed)
    b = Builder(f"fuel-{seed}")
    net = Network()
    t = 1_700_000_000_000
    mix_no = 0
    # per tank: [current mix urn or None, volume in mL]
    state = [[[None, 0] for _ in range(tanks)] for _ in range(layers)]
    load = 30_000 * 1000  # 30 m³ a delivery

    def deliver(layer: int, tank: int, src: str, volume: int, src_site: str) -> None:
        nonlocal mix_no, t
        site = sgln(f"T{layer}-", tank)
        current, held = state[layer][tank]
        mix_no += 1
        mix = lot_urn(900_000 + layer, f"MIX{mix_no}")
        t += 10
        net.events.append(b.move(t, "shipping", src_site, [(src, volume, "volume")]))
        net.events.append(b.move(t + 1, "receiving", site, [(src, volume, "volume")]))
        inputs = [(src, volume, "volume")] + ([(current, held, "volume")] if current else [])
        net.events.append(b.transform(t + 2, inputs, [(mix, held + volume, "volume")], site))
        state[layer][tank] = [mix, held + volume]
        if layer == layers - 1:
            for k in range(dispenses):
                litres = rng.randrange(20, 60) * 1000
                if state[layer][tank][1] < litres:
                    break
                t += 1
                net.events.append(b.sell(t, mix, litres, "volume", site,
                                         instrument(f"T{layer}-{tank}", k % 4),
                                         f"f{layer:02x}{tank:04x}", mix_no * 16 + k,
                                         step="dispensing"))
                state[layer][tank][1] -= litres
                net.sales += 1
            net.leaves.append(mix)
            return
        for _ in range(fan_in):  # pass part of the new mix downstream
            share = state[layer][tank][1] // (fan_in + 1)
            state[layer][tank][1] -= share
            deliver(layer + 1, rng.randrange(tanks), mix, share, site)

    refinery = sgln("R", 0)
    for n in range(batches):
        batch = lot_urn(800_000, f"B{n}")
        t += 100
        net.events.append(b.commission(t, batch, load, "volume", refinery))
        net.lots.append(batch)
        deliver(0, rng.randrange(tanks), batch, load, refinery)
    return net
