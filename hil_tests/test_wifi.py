"""A Wi-Fi node reports over MQTT to its site broker (firmware/metro/net/uplink.py):
records with good tags on `metrotrace/v1/node/{node}/up`, acknowledged ones not sent
again while it runs, a retained online status, and after a power cut the node
reconnects and goes on with its chain (what it offers again is byte for byte the same:
the newest segment keeps acknowledged records, core/outbox.py). On the unix bench the
node's MQTT client reaches a Mosquitto of the bench's own; on a rig, the broker its
`wifi:` entry names."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.wifi


@pytest.mark.load_cell
@pytest.mark.power_cut
def test_records_reach_the_site_broker_over_wifi_and_the_node_takes_its_acknowledgements(
        dut, link, stim):
    assert link.url.startswith("mqtt://")
    first = link.expect_event("power_up", timeout=10)
    stim.load(1250)
    weighing = link.expect_record("weighing", timeout=10, net=1250)
    assert weighing["gross"] == 1250 and weighing["unit"] == "g"
    # Three go-back-N timeouts (link.timeout_ms = 500) without a resend: the node
    # took the acknowledgements published on its ack topic.
    link.settle(quiet=1.5)
    assert link.resends == 0, "acknowledged records were published again"
    assert link.status == {"state": "online"}, "the node's retained status"
    before = len(link.records)
    dut.power_cut()
    again = link.expect_event("power_up", timeout=20)
    assert again["seq"] > weighing["seq"] > first["seq"]
    link.settle(quiet=0.5)
    assert link.bad_tags == 0 and link.forgeries == 0
    assert len(link.chain()) == len(link.records) > before, "the prev chain has a hole"
