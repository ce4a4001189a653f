"""What keeps a node's records trustworthy (OIML D 31, WELMEC 7.2): the outbox across
power cuts, the audit trail of legally relevant parameters, the software
identification, and the watchdog."""

from __future__ import annotations

import random
import time

import pytest

from hil_tests.harness.patch import one_byte_changed


def ean13(body: str) -> str:
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body))
    return body + str(-total % 10)


@pytest.mark.power_cut
@pytest.mark.scanner
@pytest.mark.node_config(outbox={"seg_bytes": 2048})
def test_every_stored_record_survives_power_cuts_in_the_middle_of_writes(dut, link,
                                                                            console, stim):
    rng = random.Random(8)
    link.acking = False  # records pile up on flash, several segments of them
    for cut in range(6):
        for i in range(25):  # each scan is one record appended and synced
            stim.scan("]E0" + ean13(f"95{cut:02d}{i:08d}"))
        time.sleep(rng.uniform(0.0, 0.15))  # somewhere inside the burst of writes
        dut.power_cut()
    stored = [line["rec"] for line in _console_json(console, "rec")]
    link.acking = True
    link.expect_record(where=lambda r: r["seq"] == stored[-1]["seq"], timeout=30)
    link.settle()
    by_seq = {r["seq"]: r for r in link.records}
    missing = [r["seq"] for r in stored if r["seq"] not in by_seq]
    assert not missing, f"stored records never delivered after power cuts: {missing}"
    assert link.forgeries == 0, "a sequence number was reused for other bytes"
    assert len(link.chain()) == len(link.records), "the prev chain has a hole"
    assert sum(r.get("code") == "power_up" for r in link.records) == 7
    scans = [r for r in link.records if r["kind"] == "scan"]
    assert len({r["code"] for r in scans}) == len(scans), "a scan was recorded twice"


def _console_json(console, key):
    import json

    out = []
    for line in console.lines():
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # a line cut by the power cut
            if key in obj:
                out.append(obj)
    return out


@pytest.mark.load_cell
@pytest.mark.power_cut
def test_a_calibration_change_is_in_the_audit_trail_with_old_and_new_values(
        dut, link, console, stim):
    console.send({"param": {"name": "scale.cal.span_raw", "value": 462000, "by": "hil-7"}})
    event = link.expect_event("cal_change", timeout=10)
    assert event["detail"]["param"] == "scale.cal.span_raw"
    assert (event["detail"]["old"], event["detail"]["new"]) == (420000, 462000)
    assert event["detail"]["by"] == "hil-7"
    stim.load(1000)  # the same cell, the new span: 1000 g now indicate 909.1 g
    weighing = link.expect_record("weighing", timeout=10)
    assert weighing["net"] == 910, weighing
    console.send({"param": {"name": "scale.cal.span_raw", "value": 0}})  # not legal
    assert "span_raw" in console.expect_json(key="error", timeout=5)["error"]
    dut.power_cut()  # the change is durable, and its counter goes on
    console.send({"param": {"name": "scale.cal.span_raw", "value": 420000, "by": "hil-7"}})
    back = link.expect_event("cal_change", timeout=10)
    assert (back["detail"]["old"], back["detail"]["new"]) == (462000, 420000)
    assert back["detail"]["n"] == event["detail"]["n"] + 1
    assert not [r for r in link.records if r.get("code") == "cal_change"
                and r["detail"]["new"] == 0], "a refused value left an audit event"


@pytest.mark.pulse_input
def test_a_k_factor_change_and_the_seal_are_audited(dut, link, console):
    console.send({"seal": "open", "by": "officer-3"})
    console.send({"param": {"name": "dispenser.kfactor", "value": 99_900_000, "by": "hil"}})
    console.send({"seal": "closed", "by": "officer-3"})
    opened = link.expect_event("seal", timeout=10)
    change = link.expect_event("param_change", timeout=10)
    closed = link.expect_event("seal", timeout=10)
    assert opened["detail"]["state"] == "open" and closed["detail"]["state"] == "closed"
    assert opened["seq"] < change["seq"] < closed["seq"]
    assert change["detail"]["param"] == "dispenser.kfactor"
    assert (change["detail"]["old"], change["detail"]["new"]) == (100_000_000, 99_900_000)


@pytest.mark.power_cut
def test_the_software_id_changes_when_one_byte_of_a_legal_module_changes(dut, link):
    first = link.expect_event("power_up", timeout=10)["detail"]
    legal = [m for m in dut.files.legal_modules() if m.endswith("core/flow.mpy")
             or m.endswith("core/flow.py")]
    assert legal, f"core/flow is not among the legal modules {dut.files.legal_modules()}"
    original = dut.files.read(legal[0])
    dut.files.write(legal[0], one_byte_changed(legal[0], original))
    dut.power_cut()
    changed = link.expect_event("power_up", timeout=10)["detail"]
    assert changed["fw_sha256"] != first["fw_sha256"]
    assert changed["fw"] != first["fw"] and changed["fw"].startswith("metro ")
    dut.files.write(legal[0], original)
    dut.power_cut()
    assert link.expect_event("power_up", timeout=10)["detail"]["fw"] == first["fw"]


@pytest.mark.power_cut
def test_a_byte_changed_outside_the_legal_modules_keeps_the_software_id(dut, link):
    first = link.expect_event("power_up", timeout=10)["detail"]
    module = dut.files.app_module()  # metro/app: wiring, not legally relevant
    dut.files.write(module, one_byte_changed(module, dut.files.read(module)))
    dut.power_cut()
    assert link.expect_event("power_up", timeout=10)["detail"]["fw"] == first["fw"]


@pytest.mark.node_config(wdt_ms=1000, health_ms=300)
def test_the_watchdog_resets_a_hung_loop_and_the_next_boot_says_so(dut, link):
    first = link.expect_event("power_up", timeout=10)
    assert first["detail"]["reset"] != "WDT"
    link.expect_none("event", within=2.0, code="power_up")  # healthy: never reset
    dut.hang()
    reboot = link.expect_event("power_up", timeout=10)
    assert reboot["detail"]["reset"] == "WDT"
    assert reboot["seq"] > first["seq"] and reboot["prev"] >= first["seq"]
    dut.wait_ready()  # and it works again
