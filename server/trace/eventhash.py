"""The CBV 2.0 event hash ID of an EPCIS event (CBV 2.0 §8.9, "EPCIS Event Hash ID").

Invariant: `prehash(event, context)` is a pure function of what the event says, not of
how it is written: key order, JSON or XML spelling, EPC URN or Digital Link, bare CBV
word or its URI, time zone and trailing zeros all give the same string; recordTime,
eventID, certificationInfo and errorDeclaration are left out. The rules, in the order
CBV §8.9 numbers them:
- fields in the canonical property order (`ORDER`), each `key=value`, a parent's key
  followed by its children, no separators; a list's name once, its items sorted;
- times in UTC with millisecond precision and `Z`; numbers without trailing zeros;
- CBV words (bare, URN or CURIE) as GS1 Web URIs; EPC URIs and Digital Links as the
  constrained canonical Digital Link (`digitallink.py`);
- ILMD and user extensions as `{namespace}localName[=value]`, sorted; extensions inside
  readPoint, bizLocation, sensorElement, sensorMetadata and sensorReport after their
  parent's standard fields.
Tested against the reference implementation's published vectors (docs/traceability.md
says which, and where that implementation's versions differ from each other).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

from .digitallink import canonical

CBV = "https://ref.gs1.org/cbv/"
GS1_VOC = "https://gs1.org/voc/"  # the "gs1" prefix of GS1's EPCIS 2.0 JSON-LD context
STANDARD_PREFIXES = {"epcis": "https://ref.gs1.org/epcis/", "cbv": CBV,
                     "cbvmda": "urn:epcglobal:cbv:mda:", "gs1": GS1_VOC}
_URN_VOCAB = {"urn:epcglobal:cbv:bizstep:": CBV + "BizStep-",
              "urn:epcglobal:cbv:disp:": CBV + "Disp-", "urn:epcglobal:cbv:btt:": CBV + "BTT-",
              "urn:epcglobal:cbv:sdt:": CBV + "SDT-", "urn:epcglobal:cbv:er:": CBV + "ER-"}
# fields whose bare words are CBV / GS1 vocabulary, and the URI each word expands to
_BARE = {"bizStep": CBV + "BizStep-", "disposition": CBV + "Disp-", "set": CBV + "Disp-",
         "unset": CBV + "Disp-", "component": CBV + "Comp-", "sensorType": GS1_VOC,
         "exception": GS1_VOC, "btt": CBV + "BTT-", "sdt": CBV + "SDT-"}
ORDER = ("eventTime", "eventTimeZoneOffset", "epcList", "parentID", "inputEPCList",
         "childEPCs", "quantityList", "childQuantityList", "inputQuantityList",
         "outputEPCList", "outputQuantityList", "action", "transformationID", "bizStep",
         "disposition", "persistentDisposition", "readPoint", "bizLocation",
         "bizTransactionList", "sourceList", "destinationList", "sensorElementList", "ilmd")
IGNORED = {"type", "eventID", "recordTime", "certificationInfo", "errorDeclaration",
           "@context", "comment", "rdfs:comment"}
METADATA = ("time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
            "dataProcessingMethod", "bizRules")
REPORT = ("type", "exception", "deviceID", "deviceMetadata", "rawData",
          "dataProcessingMethod", "time", "microorganism", "chemicalSubstance", "value",
          "component", "stringValue", "booleanValue", "hexBinaryValue", "uriValue",
          "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue", "uom",
          "coordinateReferenceSystem")
_EPC_LISTS = ("epcList", "inputEPCList", "childEPCs", "outputEPCList")
_QTY_LISTS = ("quantityList", "childQuantityList", "inputQuantityList", "outputQuantityList")
_PARTIES = {"bizTransactionList": ("bizTransaction", "btt"),
            "sourceList": ("source", "sdt"), "destinationList": ("destination", "sdt")}
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def event_hash(event: dict[str, Any], context: dict[str, str] | None = None) -> str:
    """`ni:///sha-256;{hex}?ver=CBV2.0` (RFC 6920) of one JSON-LD event."""
    digest = hashlib.sha256(prehash(event, context).encode("utf-8")).hexdigest()
    return f"ni:///sha-256;{digest}?ver=CBV2.0"


def prehash(event: dict[str, Any], context: dict[str, str] | None = None) -> str:
    """The canonical pre-hash string; `context` maps the document's CURIE prefixes (its
    @context) to namespaces, for extension names."""
    h = _Hasher({**STANDARD_PREFIXES, **(context or {})})
    parts = ["eventType=" + str(event.get("type", ""))]
    parts += [h.field(key, event[key]) for key in ORDER if key in event]
    parts += sorted(s for key, value in event.items()
                    if key not in ORDER and key not in IGNORED for s in h.ext(key, value))
    return "".join(parts)


def utc_ms(text: str) -> str | None:
    """ISO 8601 date-time → UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`, the 4th fraction digit
    rounding half up; None if text is not a date-time with an offset."""
    m = _TIME.match(text.strip())
    if not m or not m.group(3):
        return None
    frac = (m.group(2) or "").ljust(4, "0")
    ms = int(frac[:3]) + (1 if frac[3] >= "5" else 0)
    zone = m.group(3).replace(":", "")
    offset = timedelta(0) if zone == "Z" else (
        (-1 if zone[0] == "-" else 1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:])))
    try:
        moment = datetime.fromisoformat(m.group(1)) - offset + timedelta(milliseconds=ms)
    except ValueError:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def number(value: int | float | str) -> str | None:
    """A number without trailing zeros (1.0 → 1, 0.3430 → 0.343); None if not one."""
    try:
        numeric = float(value)
        return str(int(numeric)) if int(numeric) == numeric else str(numeric)
    except (ValueError, OverflowError):  # not a number, or nan / inf
        return None


class _Hasher:
    def __init__(self, prefixes: dict[str, str]):
        self.prefixes = prefixes

    def value(self, key: str, value: Any, vocab: str | None = None) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return number(value) or str(value)
        text = str(value).strip()
        if "time" in key.lower() and "offset" not in key.lower():
            return utc_ms(text) or text
        if vocab and text and ":" not in text:
            return vocab + text
        for urn, uri in _URN_VOCAB.items():
            if text.startswith(urn):
                return uri + text[len(urn):]
        prefix, colon, rest = text.partition(":")
        if colon and prefix in self.prefixes and not rest.startswith("//"):
            return self.prefixes[prefix] + rest  # a CURIE (rule 15)
        return number(text) or canonical(text) or text

    def pair(self, key: str, value: Any, vocab: str | None = None) -> str:
        if value is None or value == "":
            return ""
        return f"{key}={self.value(key, value, _BARE.get(vocab or key))}"

    def field(self, key: str, value: Any) -> str:
        if key in _EPC_LISTS:
            return key + "".join(sorted(self.pair("epc", v) for v in value)) if value else ""
        if key in _QTY_LISTS:
            items = sorted("quantityElement" + "".join(self.pair(k, q.get(k)) for k in
                                                       ("epcClass", "quantity", "uom"))
                           for q in value)
            return key + "".join(items) if items else ""
        if key in _PARTIES:
            name, vocab = _PARTIES[key]
            items = sorted(self.pair("type", v.get("type"), vocab) + self.pair(name, v.get(name))
                           for v in value)
            return key + "".join(items) if items else ""
        if key == "persistentDisposition":
            return key + "".join(sorted(self.pair(k, v) for k in ("set", "unset")
                                        for v in value.get(k, ())))
        if key in ("readPoint", "bizLocation"):
            return key + self.pair("id", value.get("id")) + self.rest(value, ("id",))
        if key == "sensorElementList":
            return key + "".join(sorted(self.sensor(e) for e in value)) if value else ""
        if key == "ilmd":
            return key + "".join(sorted(s for k, v in value.items() for s in self.ext(k, v)))
        return self.pair(key, value)

    def sensor(self, element: dict[str, Any]) -> str:
        meta = element.get("sensorMetadata")
        out = "sensorElement"
        if meta:
            out += "sensorMetadata" + "".join(self.pair(k, meta.get(k)) for k in METADATA) \
                + self.rest(meta, METADATA)
        out += "".join(sorted(
            "sensorReport" + "".join(self.pair(k, r.get(k), "sensorType" if k == "type" else k)
                                     for k in REPORT) + self.rest(r, REPORT)
            for r in element.get("sensorReport", ())))
        return out + self.rest(element, ("sensorMetadata", "sensorReport"))

    def rest(self, obj: dict[str, Any], known: tuple[str, ...]) -> str:
        """The user extensions of an object with an extension point, sorted."""
        return "".join(sorted(s for k, v in obj.items() if k not in known and k not in IGNORED
                              for s in self.ext(k, v)))

    def name(self, key: str) -> str:
        prefix, colon, local = key.partition(":")
        if colon and prefix in self.prefixes:
            return "{" + self.prefixes[prefix] + "}" + local
        return key

    def ext(self, key: str, value: Any) -> list[str]:
        """One extension element as strings: a list repeats its name per item."""
        if isinstance(value, list):
            return [s for item in value for s in self.ext(key, item)]
        name = self.name(key)
        if isinstance(value, dict):
            if "#text" in value:
                return [name + "=" + self.value(name, value["#text"])]
            return [name + "".join(sorted(s for k, v in value.items()
                                          if not k.startswith("@") for s in self.ext(k, v)))]
        if value is None or value == "":
            return [name]
        return [name + "=" + self.value(name, value)]
