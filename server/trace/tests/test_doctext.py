"""doc_text writes exactly what json writes for Event.to_json(), for every kind of event."""

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from metrotrace.server.trace import jsonld, netgen
from metrotrace.server.trace.doctext import ENCODE, doc_text
from metrotrace.server.trace.epcis import Event, Quantity, format_time
from metrotrace.server.trace.examples import food_events, tank_events

EXAMPLES = sorted((Path(jsonld.schema_path()).parent / "examples").rglob("*.jsonld"))


def test_generated_known_and_gs1_example_events_are_written_as_json_writes_them():
    events = food_events() + tank_events()[0] + netgen.food(3, 6).events \
        + netgen.fuel(3, 6, layers=3, tanks=2).events
    examples = [e for path in EXAMPLES
                for e in jsonld.read_document(json.loads(path.read_text()))]
    assert len(examples) == 56
    for event in events + examples:
        assert doc_text(event) == ENCODE(event.to_json()), event.event_id


def test_odd_values_fall_back_to_json_own_spelling():
    base = food_events()[0]
    odd = [replace(base, quantities=(Quantity("urn:x", Decimal("1E+2"), "KGM"),
                                     Quantity("urn:y", Decimal("0.1"), None),
                                     Quantity("urn:z"))),
           replace(base, biz_location="ünïcode \"quoted\"\n", tz="-05:30", event_id=None),
           replace(base, epcs=(7,), quantities=()),  # not a string: json's own rules
           replace(base, extra={"ex:k": [1.5, None, True]}, ilmd={"ex:lot": {"a": 1}},
                   sources=(("owning_party", "urn:s"),), biz_transactions=((None, "urn:b"),))]
    for event in odd:
        assert doc_text(event) == ENCODE(event.to_json())
        if all(isinstance(e, str) for e in event.epcs):
            assert Event.from_json(json.loads(doc_text(event))) == event


def test_time_formatting_across_seconds_and_offsets():
    stamps = [(1_700_000_000_999, "+00:00"), (1_700_000_001_000, "+00:00"),
              (1_700_000_001_000, "+01:00"), (1_700_000_001_001, "+01:00"), (5, "-05:30")]
    assert [format_time(ms, tz) for ms, tz in stamps] == [
        "2023-11-14T22:13:20.999+00:00", "2023-11-14T22:13:21.000+00:00",
        "2023-11-14T23:13:21.000+01:00", "2023-11-14T23:13:21.001+01:00",
        "1969-12-31T18:30:00.005-05:30"]
