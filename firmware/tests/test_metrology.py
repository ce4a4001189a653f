# Pure metrology logic (weigh, stable, zero, scale, flow, gs1): plain functions run
# under CPython (pytest) and the MicroPython unix port (mprun.py).

from fakes import TICKS_PERIOD, ticks_add, ticks_diff

from metro.core import flow, gs1, weigh
from metro.core.scale import F_STABLE, F_TARE_PRESET, Scale
from metro.core.stable import StabilityDetector
from metro.core.zero import ZeroError, ZeroTracker


def test_rounding_half_away_from_zero():
    assert weigh.div_round(7, 2) == 4 and weigh.div_round(-7, 2) == -4
    assert weigh.div_round(5, 3) == 2 and weigh.div_round(-4, 3) == -1
    assert weigh.round_to(1252, 5) == 1250 and weigh.round_to(1253, 5) == 1255
    assert weigh.to_indication(12525, 5) == 1255  # 1252.5 g -> 1255 g
    assert weigh.to_indication(-12524, 5) == -1250


def test_calibration_counts_to_fine_units():
    cal = weigh.Calibration(zero_raw=8000, span_raw=420000, span_load=10000)
    assert cal.fine(8000) == 0
    assert cal.fine(8000 + 420000) == 100000  # 10 kg in tenths of a gram
    assert cal.fine(8000 + 21) == 5  # 0.5 g
    neg = weigh.Calibration(zero_raw=0, span_raw=-420000, span_load=10000)
    assert neg.fine(-420000) == 100000


def test_stability_needs_a_full_quiet_window():
    det = StabilityDetector(window=3, band=50)
    assert not det.update(1000) and not det.update(1040)
    assert det.update(1090) is True  # spread 90 <= 2 * 50
    assert not det.update(1200)  # a step clears it at once
    det.reset()
    assert not det.stable


def test_zero_limits_of_r76():
    z = ZeroTracker(max_fine=150000, e_fine=50)  # Max 15 kg, e 5 g
    try:
        z.power_up(16000, True)  # 1.6 kg > 10 % of Max
    except ZeroError as e:
        assert "initial range" in str(e)
    else:
        raise AssertionError("accepted an initial zero outside ±10 % Max")
    z.power_up(1000, True)
    z.set_zero(3900, True)  # within 2 % Max (3000 fine) of 1000
    try:
        z.set_zero(4100, True)
    except ZeroError as e:
        assert "±2 %" in str(e)
    else:
        raise AssertionError("zero-setting beyond 2 % of Max")


def test_zero_tracking_rate_and_conditions():
    z = ZeroTracker(max_fine=150000, e_fine=50)
    z.power_up(0, True)
    z.track(20, True, 0)
    assert z.track(20, True, 1000) == 20  # within budget of 0.5 e per second
    assert z.track(40, True, 1100) == 7  # 1.1 s in all: 27 of the 27.5 fine units allowed
    assert z.track(200, True, 5000) == 0  # beyond ±0.5 e: a load, not drift
    assert z.track(40, False, 9000) == 0  # unstable: never tracks


def test_zero_tracking_rate_holds_at_any_sample_period():
    z = ZeroTracker(max_fine=150000, e_fine=50)
    z.power_up(0, True)
    moved = 0
    for t in range(0, 1001, 10):  # every 10 ms for one second, drift of 0.4 e
        moved += z.track(20, True, t)
    assert moved == 20  # followed all of it...
    z.track(40, True, 1010)
    moved = sum(z.track(40 + i, True, 1020 + 10 * i) for i in range(100))
    assert moved <= 25 + 1  # ...but never faster than 0.5 e per second


def _scale():
    cal = weigh.Calibration(zero_raw=0, span_raw=100000, span_load=10000)  # 10 counts/g
    return Scale(cal, e=5, max_load=15000, min_e=20, window=3)


def _feed(scale, raw, n, t0):
    out = []
    for i in range(n):
        out.extend(scale.update(raw, t0 + 100 * i))
    return out


def test_scale_one_weighing_per_load_then_zero():
    s = _scale()
    assert [k for k, _ in _feed(s, 3, 3, 0)] == ["zero"]  # power-up zero
    out = _feed(s, 12503, 10, 1000)
    weighings = [f for k, f in out if k == "weighing"]
    assert len(weighings) == 1
    w = weighings[0]
    assert (w["gross"], w["net"], w["tare"], w["flags"]) == (1250, 1250, 0, F_STABLE)
    out = _feed(s, 0, 5, 3000)
    assert [k for k, _ in out] == ["zero"]


def test_scale_tare_overload_and_presets():
    s = _scale()
    _feed(s, 0, 3, 0)
    _feed(s, 2000, 3, 500)  # a 200 g container: below Min, no weighing
    s.take_tare()
    out = _feed(s, 2000 + 5000, 4, 1000)
    (w,) = [f for k, f in out if k == "weighing"]
    assert (w["gross"], w["tare"], w["net"]) == (700, 200, 500)
    s.preset_tare(103)
    assert s.tare == 105 and s.tare_flags == F_TARE_PRESET
    out = _feed(s, 160000, 4, 3000)
    assert [f["code"] for k, f in out if k == "event"] == ["overload"]


def test_scale_refuses_power_up_zero_out_of_range():
    s = _scale()
    out = _feed(s, 20000, 3, 0)  # 2 kg on the pan at power-up: > 10 % of 15 kg
    assert out[0][0] == "event" and out[0][1]["code"] == "zero_range"


def test_pulses_to_millilitres():
    assert flow.to_millilitres(2001500, 100000000) == 20015
    assert flow.to_millilitres(1, 3) == 333333


def test_counter_extender_wraps():
    ext = flow.Extender(bits=16)
    total = 0
    for hw in (65000, 65535, 10, 300):
        total = ext.update(hw)
    assert total == 300 + 65536 - 65000


def test_dispense_by_nozzle_and_idle_timeout():
    d = flow.Dispenser(kfactor=100000000, d=10, idle_ms=5000, max_hz=2000)
    assert d.update(0, 0, nozzle=True, wall_ms=1000) == []
    d.update(1000, 1000, nozzle=True)
    ((kind, f),) = d.update(2000, 2001500 // 1000, nozzle=False, wall_ms=3000)
    assert kind == "dispense" and f["pulses"] == 2001 and f["volume"] == 20
    assert f["t_start"] == 1000 and "flags" not in f
    d2 = flow.Dispenser(kfactor=1000000, d=1, idle_ms=5000)
    d2.update(0, 0)
    d2.update(100, 10)  # first pulses start it without a nozzle switch
    d2.update(200, 20)
    ((kind, f),) = d2.update(5300, 20)
    assert f["pulses"] == 20 and f["flags"] == flow.FLAG_IDLE_END


def test_absurd_pulse_rate_is_flagged_not_dropped():
    d = flow.Dispenser(kfactor=1000000, d=1, max_hz=100)
    d.update(0, 0, nozzle=True)
    out = d.update(1000, 50000, nozzle=True)
    assert [f["code"] for _, f in out] == ["pulse_rate"]
    ((_, f),) = d.update(1100, 50000, nozzle=False)
    assert f["pulses"] == 50000 and f["flags"] & flow.FLAG_RATE


def test_gs1_check_digits():
    assert gs1.check_digit_ok(b"4006381333931")
    assert not gs1.check_digit_ok(b"4006381333932")
    assert gs1.check("]E0", b"4006381333931") is None
    assert gs1.check("]E0", b"4006381333932") == "code: bad check digit"
    good = b"0109506000134352" + b"10ABC123\x1d3103001250"
    assert gs1.check("]C1", good) is None
    assert "AI (01)" in gs1.check("]d2", b"0109506000134353")
    assert gs1.split_aim(b"]C1" + good) == ("]C1", good)
    assert gs1.split_aim(b"12345") == ("", b"12345")


def test_scan_links_to_the_next_measurement_once():
    link = gs1.ScanLinker(window_ms=1000)
    link.scanned(17, 0)
    assert link.take(500) == 17 and link.take(600) is None
    link.scanned(18, 0)
    assert link.take(1500) is None


def test_pulses_between_lift_and_first_poll_belong_to_the_dispense():
    d = flow.Dispenser(kfactor=100000000, d=10, max_hz=2000)
    d.update(0, 0, nozzle=False)
    d.update(100, 18, nozzle=True)  # lifted, and 18 pulses already counted
    d.update(200, 200, nozzle=True)
    ((kind, f),) = d.update(300, 250, nozzle=False)
    assert kind == "dispense" and f["pulses"] == 250


def test_rated_flow_polled_fast_is_not_a_rate_excess():
    d = flow.Dispenser(kfactor=100000000, d=10, max_hz=2000)
    d.update(0, 0, nozzle=True)
    assert d.update(8, 17, nozzle=True) == []  # 16 pulses in 8 ms, read one early
    assert d.update(16, 50, nozzle=True) != []  # twice the rated flow


def test_scale_check_reads_the_stable_load_against_the_reference():
    s = _scale()
    _feed(s, 0, 3, 0)
    s.update(20000, 400)  # 2 kg arriving: not stable yet
    try:
        s.check(2000, "TW-2kg-17")
    except ZeroError as e:
        assert "not stable" in str(e)
    else:
        raise AssertionError("a check on a moving load")
    _feed(s, 20003, 3, 500)  # 2000.3 g, settled
    got = s.check(2000, "TW-2kg-17")
    assert got == {"indication": 2000, "reference": 2000, "e": 5, "unit": "g",
                   "raw": 20003, "ref_id": "TW-2kg-17"}
    _feed(s, 20027, 3, 900)  # 2002.7 g: an error of +1 e shows in indication and raw
    got = s.check(2000)
    assert (got["indication"], got["raw"]) == (2005, 20027) and "ref_id" not in got
    _feed(s, 160000, 3, 1300)  # overloaded: nothing to check against
    try:
        s.check(2000)
    except ZeroError:
        pass
    else:
        raise AssertionError("a check above Max + 9 e")


def test_indicator_motion_flag_vetoes_stability():
    s = _scale()
    for i in range(3):
        s.update(0, 100 * i, True)
    out = []
    for i in range(6):  # the node's window is quiet, but the indicator says "S D"
        out.extend(s.update(12500, 1000 + 100 * i, False))
    assert [k for k, _ in out] == [] and not s.stable
    try:
        s.take_tare()
    except ZeroError:
        pass
    else:
        raise AssertionError("tare taken while the indicator reports motion")
    out = s.update(12500, 2000, True)  # both agree now
    (w,) = [f for k, f in out if k == "weighing"]
    assert w["net"] == 1250 and w["flags"] & F_STABLE


def test_indicator_overload_is_one_event_per_episode():
    s = _scale()
    _feed(s, 0, 3, 0)
    assert s.out_of_range("overload") == [
        ("event", {"code": "overload", "detail": {"by": "indicator"}})]
    assert s.out_of_range("overload") == []  # still overloaded: no second event
    assert not s.stable
    assert s.update(12500, 1000, True) == []  # the window starts again after it
    _feed(s, 12500, 2, 1100)
    assert [k for k, _ in s.out_of_range("underload")] == ["event"]


def test_dispenser_check_against_a_proving_measure():
    d = flow.Dispenser(kfactor=100000, d=10)  # 100 pulses per litre
    for bad_state in ("before any delivery", "while running"):
        try:
            d.check(20000, "PM-20L-3")
        except ValueError as e:
            assert str(e).startswith("check:"), e
        else:
            raise AssertionError("check accepted " + bad_state)
        d.update(0, 0, nozzle=True)
    d.update(1000, 1000, nozzle=True)
    ((_, rec),) = d.update(2000, 2003, nozzle=False)
    assert rec["volume"] == 20030
    got = d.check(20000, "PM-20L-3")  # the 20 L measure reads 20.000 L
    assert got == {"indication": 20030, "reference": 20000, "e": 10, "unit": "mL",
                   "raw": 2003, "ref_id": "PM-20L-3"}
    d.last = None  # what app/node.py does once the check record is stored
    try:
        d.check(20000)
    except ValueError as e:
        assert "already checked" in str(e)
    else:
        raise AssertionError("one delivery checked twice")


def test_idle_ended_dispense_across_a_wrap_of_the_ms_counter():
    # Fuel stops flowing 2 s before ticks_ms wraps: the idle timeout must end the
    # delivery 5 s later, after the wrap (plain subtraction would wait ~12 days).
    d = flow.Dispenser(kfactor=1000000, d=1, idle_ms=5000, max_hz=2000, diff=ticks_diff)
    t = TICKS_PERIOD - 6000
    d.update(t, 0)
    total = 0
    for _ in range(4):  # 10 pulses a second, polled every second
        t = ticks_add(t, 1000)
        total += 10
        assert d.update(t, total) == []
    assert t == TICKS_PERIOD - 2000  # the last pulses
    assert d.update(ticks_add(t, 1000), total) == []
    assert d.update(ticks_add(t, 4999), total) == []
    assert ticks_add(t, 5000) == 3000  # wrapped
    ((kind, f),) = d.update(ticks_add(t, 5000), total)
    assert kind == "dispense" and f["pulses"] == 40 and f["flags"] == flow.FLAG_IDLE_END


def test_zero_tracking_and_scan_link_across_a_wrap_of_the_ms_counter():
    z = ZeroTracker(max_fine=150000, e_fine=50, diff=ticks_diff)
    z.power_up(0, True)
    z.track(20, True, TICKS_PERIOD - 500)
    assert z.track(20, True, 500) == 20  # one second later, across the wrap
    link = gs1.ScanLinker(window_ms=1000, diff=ticks_diff)
    link.scanned(5, TICKS_PERIOD - 100)
    assert link.take(5000) is None  # 5.1 s later: too late to belong to it
    link.scanned(6, TICKS_PERIOD - 100)
    assert link.take(200) == 6
