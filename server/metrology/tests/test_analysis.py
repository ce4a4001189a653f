"""`metrotrace drift analyze` end to end: registry + readings (CSV and Parquet) -> states."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metrotrace.server.metrology import InputError, analysis
from metrotrace.tools.cli import main

DAY = 86_400_000
T0 = 1_760_000_000_000
NOW = T0 + 200 * DAY
REGISTRY = [
    # instrument, table, class, unit, e, mmq, verified_ms, due_ms
    ("ok-scale", "oiml-r76", "III", "g", 5, "", T0, NOW + 100 * DAY),
    ("drifting-scale", "oiml-r76", "III", "g", 5, "", T0, NOW + 400 * DAY),
    ("broken-scale", "oiml-r76", "III", "g", 5, "", T0, NOW + 100 * DAY),
    ("overdue-scale", "oiml-r76", "III", "g", 5, "", T0, NOW - DAY),
    ("pump", "oiml-r117", "0.5", "mL", 10, 2000, T0, NOW + 100 * DAY),
]


def readings():
    rng = np.random.default_rng(4)
    rows = []
    for name, slope in (("ok-scale", 0), ("drifting-scale", 0.03), ("broken-scale", 0),
                        ("overdue-scale", 0)):
        for d in range(180):
            load = (2000, 10000)[d % 2]
            true = load + slope * max(0, d - 60) + rng.normal(0, 0.5)
            if name == "broken-scale" and d == 150:
                true += 12  # one check 12 g off: in-service MPE at 10 kg is 10 g
            ind = int(round(true / 5) * 5)
            # Plain scales send no raw counts: their indication error, rounded to e, is
            # exactly 0 here, so no chart can signal by chance (a scale with raw counts and
            # an estimated baseline has a real false-alarm rate: docs/metrology.md).
            raw = int(8000 + 200 * true) if name == "drifting-scale" else ""
            rows.append((name, T0 + d * DAY, "check", ind, load, raw, "", "", ""))
            rows.append((name, T0 + d * DAY + 1, "zero", 0, "", "", "", "", ""))
    for d in range(60):
        off = 1.007 if d >= 50 else 1.0  # 0.7 % too much indicated from day 50
        rows.append(("pump", T0 + d * DAY, "dispense", "", "", "", int(20000 * off), 2000,
                     100_000))
    rng.shuffle(rows)  # the reader groups and sorts
    return rows


HEAD_R = ["instrument", "table", "class", "unit", "e", "mmq", "verified_ms", "due_ms"]
HEAD = ["instrument", "t", "kind", "indication", "reference", "raw", "volume", "pulses",
        "kfactor"]


def write_csv(path, head, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)


@pytest.fixture
def files(tmp_path):
    write_csv(tmp_path / "registry.csv", HEAD_R, REGISTRY)
    rows = readings()
    write_csv(tmp_path / "readings.csv", HEAD, rows)
    cols = list(zip(*rows, strict=True))
    table = pa.table({h: pa.array([None if v == "" else v for v in c],
                                  type=pa.string() if h in ("instrument", "kind") else pa.int64())
                      for h, c in zip(HEAD, cols, strict=True)})
    pq.write_table(table, tmp_path / "readings.parquet")
    return tmp_path


def states(report):
    return {r["instrument"]: r["state"] for r in report}


def test_csv_and_parquet_give_the_same_report_and_the_expected_states(files, capsys):
    got = analysis.analyze(files / "registry.csv", files / "readings.csv", NOW)
    assert states(got) == {"ok-scale": "ok", "drifting-scale": "drifting",
                           "broken-scale": "out_of_tolerance",
                           "overdue-scale": "overdue_verification", "pump": "drifting"}
    by = {r["instrument"]: r for r in got}
    assert by["broken-scale"]["first_alarm_ms"] == T0 + 150 * DAY
    assert by["pump"]["pulse_anomalies"] == 10
    drifting = by["drifting-scale"]
    assert drifting["first_alarm_ms"] < T0 + 120 * DAY
    assert drifting["cusum"] >= 20  # a sustained drift signals again and again
    assert drifting["slope_r_per_day"] > 0 and drifting["crossing_ms"] > NOW
    assert drifting["crossing_lo_ms"] < drifting["crossing_ms"] < drifting["crossing_hi_ms"]
    one_batch = analysis.analyze(files / "registry.csv", files / "readings.parquet", NOW,
                                 batches=1)
    assert one_batch == got  # streaming in 10 time slices == one batch
    assert main(["drift", "analyze", str(files / "registry.csv"),
                 str(files / "readings.parquet"), "--now", str(NOW), "--json",
                 "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["instruments"] == 5 and len(doc["report"]) == 4  # ok-scale is not listed
    assert main(["drift", "analyze", str(files / "registry.csv"),
                 str(files / "readings.csv"), "--now", str(NOW)]) == 0
    assert "drifting-scale" in capsys.readouterr().out


def test_unknown_instrument_is_named(files):
    write_csv(files / "bad.csv", HEAD, [("nobody", T0, "check", 1, 1, "", "", "", "")])
    with pytest.raises(InputError, match=r"^instrument: 'nobody' is not in the registry"):
        analysis.analyze(files / "registry.csv", files / "bad.csv", NOW)


# A fleet of one kind has no values, or no columns at all, for the other kinds' fields:
# the reader needs a kind's columns only where a row of that kind is present.
SCALES = ["ok-scale", "drifting-scale", "broken-scale", "overdue-scale"]
SCALE_HEAD = HEAD[:6]  # instrument, t, kind, indication, reference, raw
PUMP_HEAD = HEAD[:3] + HEAD[6:]  # instrument, t, kind, volume, pulses, kfactor


def write_both(tmp_path, name, head, rows):
    """rows (strings "" for empty) -> name.csv and name.parquet with those columns only."""
    write_csv(tmp_path / f"{name}.csv", head, rows)
    cols = list(zip(*rows, strict=True))
    pq.write_table(pa.table({h: pa.array([None if v == "" else v for v in c],
                                         type=pa.string() if h in ("instrument", "kind")
                                         else pa.int64())
                             for h, c in zip(head, cols, strict=True)}),
                   tmp_path / f"{name}.parquet")
    return [tmp_path / f"{name}.csv", tmp_path / f"{name}.parquet"]


def only(kinds, head):
    keep = [HEAD.index(h) for h in head]
    return [tuple(r[i] for i in keep) for r in readings() if r[2] in kinds]


@pytest.mark.parametrize("head", [SCALE_HEAD, HEAD], ids=["no-pump-columns", "empty-pump-columns"])
def test_a_scales_only_fleet_analyses_from_csv_and_parquet(files, head, capsys):
    mixed = states(analysis.analyze(files / "registry.csv", files / "readings.csv", NOW))
    for path in write_both(files, "scales", head, only(("check", "zero"), head)):
        got = states(analysis.analyze(files / "registry.csv", path, NOW))
        assert got == {**{k: mixed[k] for k in SCALES}, "pump": "ok"}, path.name
        assert main(["drift", "analyze", str(files / "registry.csv"), str(path), "--now",
                     str(NOW), "--json", "--no-progress"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert {r["instrument"]: r["state"] for r in doc["report"]} == {
            k: v for k, v in got.items() if v != "ok"}


@pytest.mark.parametrize("head", [PUMP_HEAD, HEAD], ids=["no-scale-columns", "empty-scale-columns"])
def test_a_pumps_only_fleet_analyses_from_csv_and_parquet(files, head):
    for path in write_both(files, "pumps", head, only(("dispense",), head)):
        report = {r["instrument"]: r for r in analysis.analyze(files / "registry.csv", path, NOW)}
        assert report["pump"]["state"] == "drifting", path.name
        assert report["pump"]["pulse_anomalies"] == 10
        # the scales have no readings: nothing against them but the overdue date
        assert {k: report[k]["state"] for k in SCALES} == {
            "ok-scale": "ok", "drifting-scale": "ok", "broken-scale": "ok",
            "overdue-scale": "overdue_verification"}
        assert report["ok-scale"]["checks"] == 0


@pytest.mark.parametrize("blank, message", [
    (("check", "reference"), r"^reference: empty value at row \d+ \(a check row needs one\)"),
    (("zero", "indication"), r"^indication: empty value at row \d+ \(a zero row needs one\)"),
    (("dispense", "pulses"), r"^pulses: empty value at row \d+ \(a dispense row needs one\)"),
])
def test_a_missing_value_is_named_with_its_row(files, blank, message):
    rows = [list(r) for r in readings()]
    kind, column = blank
    row = next(i for i, r in enumerate(rows) if r[2] == kind)
    rows[row][HEAD.index(column)] = ""
    for path in write_both(files, "gap", HEAD, rows):
        with pytest.raises(InputError, match=message) as info:
            analysis.analyze(files / "registry.csv", path, NOW)
        assert f"row {row} " in str(info.value)


def test_a_missing_column_is_named_with_the_first_row_that_needs_it(files):
    rows = only(("check", "zero", "dispense"), SCALE_HEAD)  # dispense rows, no pump columns
    first = next(i for i, r in enumerate(rows) if r[2] == "dispense")
    for path in write_both(files, "nocol", SCALE_HEAD, rows):
        with pytest.raises(InputError, match=rf"^volume: missing column in the readings "
                                             rf"file \(dispense rows need it, first at row "
                                             rf"{first}\)"):
            analysis.analyze(files / "registry.csv", path, NOW)
