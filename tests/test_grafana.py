"""The Grafana option (docs/grafana/): its provisioning files and dashboard agree with each
other and with what the server's InfluxDB exporter writes (server/export/influx.py)."""

import json
import re
from pathlib import Path

import yaml

from metrotrace.firmware.metro.wire import record as wire
from metrotrace.server.export import influx
from metrotrace.server.store.rows import RecordRow

GRAFANA = Path(__file__).resolve().parent.parent / "docs" / "grafana"


def dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "metrotrace-readings.json").read_text())


def queries(dash: dict) -> list[str]:
    return [t["query"] for p in dash["panels"] for t in p["targets"]]


def test_every_panel_uses_the_provisioned_datasource():
    (source,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" /
                                "metrotrace-influxdb.yaml").read_text())["datasources"]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "Flux"
    assert "token" in source["secureJsonData"]  # never in jsonData, which Grafana shows
    dash = dashboard()
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]
    (provider,) = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" /
                                  "metrotrace.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"]


def test_queries_name_only_what_the_exporter_writes():
    measurements = set(influx.MEASUREMENT.values()) | {"instrument_status"}
    fields = set(influx._FIELDS) | {"status", "max", "min", "e"}
    kinds = {wire.KIND_NAMES[k] for k in influx.MEASUREMENT}
    for query in queries(dashboard()):
        assert set(re.findall(r'_measurement == "(\w+)"', query)) <= measurements, query
        assert set(re.findall(r'_field == "(\w+)"', query)) <= fields, query
        assert set(re.findall(r'r\.kind == "(\w+)"', query)) <= kinds, query
        assert 'from(bucket: "${bucket}")' in query or "schema.tagValues" in query


def test_a_check_record_becomes_the_line_the_check_panel_reads():
    row = RecordRow(node=bytes.fromhex("4d4b543100000002"), seq=7, kind=wire.CHECK,
                    t=1_763_884_800_000, tq=wire.TQ_GATEWAY, inst="MKT1-S2", prev=6,
                    value=10_010, gross=None, tare=None, reference=10_000, e=5, unit="g",
                    raw=420_400, flags=None, link=None, extra=None, record=b"", tag=b"")
    text = influx.line(row)
    assert text.startswith("check,instrument=MKT1-S2,kind=check,")
    for name in ("value=10010i", "reference=10000i", "e=5i"):
        assert name in text
    (panel,) = [p for p in dashboard()["panels"] if p["title"].startswith("Check error")]
    query = panel["targets"][0]["query"]
    assert "r.value - r.reference" in query and "float(v: r.e)" in query
