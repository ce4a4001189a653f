"""Records reach a real gateway process over the serial link: `metrotrace gateway run`
opens the DUT's link port (the bridge's pty on the unix bench, the UART adapter on a
rig), verifies, stores, acknowledges, sets the node's clock, signs and publishes them
to its broker. On the unix bench the test runs twice, with the link as a pty and as a
socket:// URL: the test's own link lets go of the port and the gateway opens it, as on
a rig."""

from __future__ import annotations

import pytest

from hil_tests.harness.gateway import GatewayRun


@pytest.mark.load_cell
@pytest.mark.scanner
@pytest.mark.power_cut
def test_records_reach_a_real_gateway_process_over_the_serial_link(dut, console, stim,
                                                                   tmp_path, transport):
    if transport != "board":
        assert dut.bridge.kind == transport
    power_up = dut.link.expect_event("power_up", timeout=10)
    port = dut.release_link()
    with GatewayRun(tmp_path / "gateway", {dut.node: dut.key}, [port]) as gw:
        stim.scan("]E04006381333931")
        stim.load(1250)
        weighing = console.expect_json(lambda line: line["rec"]["kind"] == "weighing",
                                       key="rec", timeout=10)["rec"]
        scan = [line["rec"] for line in _recs(console) if line["rec"]["kind"] == "scan"]
        got = gw.uplink.expect_record(dut.node, weighing["seq"], timeout=30)
        assert (got["kind"], got["net"], got["unit"]) == ("weighing", 1250, "g")
        assert got["link"] == scan[0]["seq"], "the weighing is not linked to its scan"
        assert gw.uplink.expect_record(dut.node, scan[0]["seq"])["code"] == \
            b"]E04006381333931"
        # The node had no clock (the test's own link sets none): the gateway's tagged T
        # frame sets it, an audit event says so, and records from then on carry tq 2.
        clock = gw.uplink.expect_where(lambda r: r.get("code") == "clock_set",
                                       "clock_set event")
        assert (clock["detail"]["old_tq"], clock["detail"]["tq"]) == (0, 2), clock
        assert power_up["tq"] == 0
        stim.load(0)  # the pan is cleared after the clock was set: a zero record
        zero = gw.uplink.expect_where(
            lambda r: r["kind"] == "zero" and r["seq"] > clock["seq"], "zero record")
        assert zero["tq"] == 2, zero
        assert not gw.uplink.errors
        # After a reset the gateway's status names the firmware the node's power-up said.
        dut.power_cut()
        boot = [line["rec"] for line in _recs(console)
                if line["rec"].get("code") == "power_up"][-1]  # printed before ready
        assert boot["detail"]["fw"] == power_up["detail"]["fw"]
        gw_fw = _wait(lambda: gw.uplink.status.get("nodes", {}).get(dut.node.hex()))
        assert gw_fw == boot["detail"]["fw"], gw.log_tail()
        assert gw.uplink.expect_record(dut.node, boot["seq"])["detail"]["reset"] == "HOST"


def _recs(console):
    import json

    return [json.loads(x) for x in console.lines() if x.startswith('{"rec"')]


def _wait(get, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = get()
        if value:
            return value
        time.sleep(0.1)
    return None
