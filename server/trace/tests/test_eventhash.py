import copy
import json
from pathlib import Path

import pytest

from metrotrace.server.trace import digitallink, eventhash, jsonld

VECTORS = json.loads((Path(__file__).parent / "data" / "cbv_hash_vectors.json").read_text())
EXAMPLES = Path(jsonld.schema_path()).parent / "examples"


def test_reference_implementation_vectors():
    """13 events of five types: EPC URNs → Digital Link, bare CBV words, ILMD with CURIEs,
    business transactions and source/destination types, the spec's field order."""
    doc = VECTORS["document"]
    context = jsonld.extension_context(doc)
    hashes = [eventhash.event_hash(e, context) for e in jsonld.event_list(doc)]
    assert hashes == VECTORS["hashes"]


@pytest.mark.parametrize("key", sorted(VECTORS["reference_1_9_3"]))
def test_gs1_examples_hash_as_the_reference_release_does(key):
    name, index = key.rsplit("#", 1)
    doc = json.loads((EXAMPLES / name).read_text())
    event = copy.deepcopy(jsonld.event_list(doc)[int(index)])
    given = event.pop("eventID", None)
    got = eventhash.event_hash(event, jsonld.extension_context(doc))
    assert got == VECTORS["reference_1_9_3"][key]
    assert given != got  # GS1's example eventIDs are placeholders, not content hashes


def test_the_hash_depends_on_content_not_spelling():
    event = copy.deepcopy(jsonld.event_list(VECTORS["document"])[9])  # a TransactionEvent
    base = eventhash.event_hash(event)
    respelled = dict(reversed(list(event.items())))
    respelled["eventTime"] = "2019-10-21T12:58:56.5910Z"  # same instant, other zone
    respelled["bizStep"] = "urn:epcglobal:cbv:bizstep:holding"
    respelled["quantityList"] = [{"uom": "KGM", "quantity": 2030.0, "epcClass":
                                  "https://example.com/01/04012345999884/10/2014-02-10?x=1"}]
    respelled["readPoint"] = {"id": "https://id.gs1.org/414/4012345000252"}
    respelled["recordTime"] = "2030-01-01T00:00:00Z"
    respelled["eventID"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    assert eventhash.event_hash(respelled) == base
    for field, value in (("eventTimeZoneOffset", "+05:00"), ("action", "OBSERVE"),
                         ("bizLocation", {"id": "urn:epc:id:sgln:4012345.00002.7"})):
        assert eventhash.event_hash({**event, field: value}) != base, field


def test_document_without_event_ids_gets_hash_ids():
    doc = copy.deepcopy(VECTORS["document"])
    for item in jsonld.event_list(doc):
        item.pop("eventID", None)
    events = jsonld.read_document(doc)
    assert [e.event_id for e in events] == VECTORS["hashes"]


def test_extensions_sort_by_namespace_and_nest():
    event = {"type": "ObjectEvent", "eventTime": "2020-03-04T11:00:30+01:00",
             "eventTimeZoneOffset": "+01:00", "action": "OBSERVE",
             "ex:b": {"ex:y": "2", "ex:x": ["3", "1.50"]}, "ex:a": "0"}
    assert eventhash.prehash(event, {"ex": "https://ns.example.com/"}) == (
        "eventType=ObjectEventeventTime=2020-03-04T10:00:30.000ZeventTimeZoneOffset=+01:00"
        "action=OBSERVE{https://ns.example.com/}a=0{https://ns.example.com/}b"
        "{https://ns.example.com/}x=1.5{https://ns.example.com/}x=3"
        "{https://ns.example.com/}y=2")


@pytest.mark.parametrize("epc,link", [
    ("urn:epc:id:sgtin:4012345.011111.9876", "https://id.gs1.org/01/04012345111118/21/9876"),
    ("urn:epc:id:sscc:4012345.0111111111", "https://id.gs1.org/00/040123451111111110"),
    ("urn:epc:id:sgln:4012345.00012.0", "https://id.gs1.org/414/4012345000122"),
    ("urn:epc:id:sgln:4012345.00000.5", "https://id.gs1.org/414/4012345000009/254/5"),
    ("urn:epc:id:pgln:4000001.98765", "https://id.gs1.org/417/4000001987658"),
    ("urn:epc:id:grai:4012345.55555.987", "https://id.gs1.org/8003/04012345555554987"),
    ("urn:epc:id:giai:4000001.111", "https://id.gs1.org/8004/4000001111"),
    ("urn:epc:id:gdti:4012345.55555.1234", "https://id.gs1.org/253/40123455555541234"),
    ("urn:epc:class:lgtin:4012345.099988.2014-02-10",
     "https://id.gs1.org/01/04012345999884/10/2014-02-10"),
    ("urn:epc:idpat:sgtin:4012345.066666.*", "https://id.gs1.org/01/04012345666663"),
    ("https://brand.example/01/4012345111118/10/L1/21/9876?17=250101",
     "https://id.gs1.org/01/04012345111118/21/9876"),
    ("urn:epc:id:usdod:2S194.12345", None),
    ("https://example.org/po/12345678", None),
])
def test_epc_and_digital_link_to_constrained_canonical_form(epc, link):
    assert digitallink.canonical(epc) == link
