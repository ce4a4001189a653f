"""A fuel dispenser counts every pulse of its meter, also at the highest rated flow and
while its link is busy (OIML R 117-1: the indicated volume is the metered volume).

Rig: the stimulus board's PIO makes exactly N pulses at F Hz on the DUT's pulse input
and works the nozzle switch; on the unix DUT the simulated pulser does the same
through the pin interrupt path of an RP2040 without PIO.
"""

from __future__ import annotations

import pytest

from metrotrace.firmware.metro.core.flow import FLAG_RATE

pytestmark = pytest.mark.pulse_input

K = 3_000_000  # pulses per 1000 L: a 3000 pulses/L meter
D = 10  # mL, the dispenser's scale interval
MAX_HZ = 2000  # the rated maximum pulse rate: 2000 / 3000 L/s = 40 L/min
PUMP = {"kfactor": K, "d": D, "max_hz": MAX_HZ, "idle_ms": 30000}


def ean13(body: str) -> str:
    """12 digits and their GS1 check digit."""
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body))
    return body + str(-total % 10)


def volume_ml(pulses: int) -> int:
    """pulses * 10^6 / K mL, rounded half up to the interval d (docs/protocol.md)."""
    exact_tenths = pulses * 10_000_000 // K  # tenths of a mL, truncated
    ml = (exact_tenths + 5) // 10
    return (ml + D // 2) // D * D


@pytest.mark.scanner
@pytest.mark.node_config(dispenser=PUMP, link={"window": 4, "timeout_ms": 200})
def test_every_pulse_is_counted_at_the_highest_rated_flow_while_the_link_is_busy(
        dut, link, console, stim):
    pulses = 4000  # two seconds at the rated maximum
    link.acking = False  # a gateway that stores nothing: the node resends go-back-N rounds
    stim.pulses(pulses, MAX_HZ)
    for i in range(40):  # meanwhile the node makes and stores records of its own
        stim.scan("]E0" + ean13(f"950123456{i:03d}"))
    stim.nozzle("down")  # waits for the end of the train
    console.expect_json(lambda line: line["rec"]["kind"] == "dispense", key="rec",
                        timeout=pulses / MAX_HZ + 10)
    assert link.resends > 0, "the link was never busy: no record was sent twice"
    link.acking = True  # the network is back: the outbox drains in order
    dispense = link.expect_record("dispense", timeout=10)
    assert dispense["pulses"] == pulses
    assert dispense["volume"] == volume_ml(pulses) == 1330
    assert dispense["kfactor"] == K and dispense["unit"] == "mL"
    assert not dispense.get("flags", 0) & FLAG_RATE, "the rated flow was flagged as too high"
    link.settle()
    assert not [r for r in link.records if r.get("code") == "pulse_rate"]


@pytest.mark.node_config(dispenser=PUMP)
def test_a_pulse_rate_above_the_rating_is_flagged_and_every_pulse_still_counted(
        dut, link, stim):
    pulses = 1500
    stim.pulses(pulses, 2 * MAX_HZ)
    stim.nozzle("down")
    event = link.expect_event("pulse_rate", timeout=10)
    assert event["detail"]["max_hz"] == MAX_HZ
    dispense = link.expect_record("dispense", timeout=10)
    assert dispense["pulses"] == pulses
    assert dispense["flags"] & FLAG_RATE


@pytest.mark.node_config(dispenser=PUMP)
def test_each_nozzle_cycle_is_one_dispense_with_its_own_pulses(dut, link, stim):
    trains = (1, 299, 3000)
    for n in trains:
        stim.pulses(n, MAX_HZ // 2)
        stim.nozzle("down")
    got = [link.expect_record("dispense", timeout=10) for _ in trains]
    assert [r["pulses"] for r in got] == list(trains)
    assert [r["volume"] for r in got] == [volume_ml(n) for n in trains] == [0, 100, 1000]
