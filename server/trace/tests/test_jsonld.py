import copy
import json
from pathlib import Path

import pytest

from metrotrace.server.trace import DocumentError, eventhash, jsonld
from metrotrace.server.trace.build import Builder
from metrotrace.server.trace.netgen import food, lot_urn, sgln

EXAMPLES = sorted((Path(jsonld.schema_path()).parent / "examples").rglob("*.jsonld"))


def load(path):
    return json.loads(path.read_text())


def test_gs1_examples_are_there():
    assert len(EXAMPLES) >= 40


def test_every_example_validates_imports_and_round_trips(store):
    captured = 0
    for path in EXAMPLES:
        doc = load(path)
        events = jsonld.read_document(doc)  # all 47 examples pass GS1's schema
        assert len(events) == len(jsonld.event_list(doc)) > 0, path
        # foreign documents name objects they never commissioned: allowed explicitly
        store.capture(events, 1, require_known=False, context=jsonld.extension_context(doc))
        again = jsonld.read_document(jsonld.write_document(events, jsonld.extension_context(doc)))
        assert again == events, path
        captured += len(events)
    stored = [e for e, _ in store.events()]
    assert captured == 56 and len(stored) == len({e.event_id for e in stored}) == 48
    exported = jsonld.write_document(stored, store.context())
    jsonld.validate(exported)
    assert jsonld.read_document(exported) == stored


def test_event_hash_ignores_key_order_and_record_time_but_not_content():
    doc = load(EXAMPLES[0])
    item = jsonld.event_list(doc)[0]
    shuffled = dict(reversed(list(item.items())))
    shuffled["recordTime"] = "2030-01-01T00:00:00Z"
    assert eventhash.event_hash(item) == eventhash.event_hash(shuffled)
    changed = copy.deepcopy(item)
    changed["eventTimeZoneOffset"] = "+05:00"
    assert eventhash.event_hash(item) != eventhash.event_hash(changed)
    assert eventhash.event_hash(item).startswith("ni:///sha-256;")


def test_events_without_id_get_the_hash_id():
    doc = load(EXAMPLES[0])
    for item in jsonld.event_list(doc):
        item.pop("eventID", None)
    events = jsonld.read_document(doc)
    context = jsonld.extension_context(doc)
    assert events[0].event_id == eventhash.event_hash(jsonld.event_list(doc)[0], context)


def _doc(events):
    return jsonld.write_document(events)


def test_malformed_document_names_event_and_field():
    doc = _doc(food(1, 2).events[:3])
    doc["epcisBody"]["eventList"][1]["action"] = "SHOUT"
    with pytest.raises(DocumentError) as err:
        jsonld.read_document(doc)
    assert err.value.event == 1 and err.value.field == "action"
    with pytest.raises(DocumentError) as err:
        jsonld.read_document({"type": "EPCISDocument"})
    assert err.value.event is None
    bad_time = _doc(food(1, 2).events[:1])
    bad_time["epcisBody"]["eventList"][0]["eventTime"] = "yesterday"
    with pytest.raises(DocumentError) as err:
        jsonld.read_document(bad_time, check_schema=False)
    assert (err.value.event, err.value.field) == (0, "eventTime")


def test_sensor_quantity_with_wrong_unit_is_refused():
    b = Builder()
    sale = b.sell(1, lot_urn(1, "A"), 1000, "mass", sgln("M", 1), "urn:epc:id:giai:1.x", "aa", 1)
    doc = _doc([sale])
    doc["epcisBody"]["eventList"][0]["sensorElementList"][0]["sensorReport"][0]["uom"] = "LTR"
    with pytest.raises(DocumentError) as err:
        jsonld.read_document(doc)
    assert err.value.field == "sensorElementList[0].sensorReport[0].uom"


def test_capture_is_atomic_and_names_unknown_lot(store):
    net = food(3, 2)
    good = net.events[:3]
    b = Builder("other")
    stray = b.sell(2, lot_urn(5, "NEVER-MADE"), 250_000, "mass", sgln("M", 0),
                   "urn:epc:id:giai:1.x", "aa", 1)
    events = jsonld.read_document(_doc(good + [stray]))
    with pytest.raises(DocumentError) as err:
        store.capture(events, 1)
    assert (err.value.event, err.value.field) == (3, "quantityList[0].epcClass")
    assert store.rows("SELECT COUNT(*) FROM trace_event")[0][0] == 0  # nothing stored
    assert store.capture(events[:3], 1) and store.capture(events[:3], 1)  # resend: no-op
    assert store.rows("SELECT COUNT(*) FROM trace_event")[0][0] == 3


def test_quantity_in_a_unit_of_another_dimension_is_refused(store):
    b = Builder()
    lot, site = lot_urn(7, "OIL1"), sgln("P", 1)
    store.capture([b.commission(1, lot, 5_000_000, "mass", site)], 1)
    litres = b.move(2, "shipping", site, [(lot, 5000, "volume")])
    with pytest.raises(DocumentError) as err:
        store.capture([b.move(2, "shipping", site, [(lot, 5_000_000, "mass")]), litres], 1)
    assert (err.value.event, err.value.field) == (1, "quantityList[0].uom")
    assert "mass" in err.value.reason
    assert store.rows("SELECT COUNT(*) FROM trace_event")[0][0] == 1
