"""EPCIS 2.0 JSON-LD documents: validate against GS1's JSON schema, read, write, hash.

Invariant: `read_document` returns events only for a document that passes GS1's schema
and the model's own checks; otherwise it raises one DocumentError naming the event index
and the field, so a capture built on it is all-or-nothing (EPCIS 2.0 §8.2.2, the default
GS1-Capture-Error-Behaviour). Events without an eventID get the CBV 2.0 event hash ID
(`eventhash.py`), computed from the event as received with the document's prefixes.
`read_document(write_document(events))` returns the same events.

GS1's schema carries no open-source licence, so it is not shipped: it is read from
$METROTRACE_EPCIS_SCHEMA, else from ../shared/data/epcis/ beside the checkout.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from . import DocumentError
from .epcis import Event, parse_time
from .eventhash import event_hash

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
SCHEMA_ENV = "METROTRACE_EPCIS_SCHEMA"
_SHARED_SCHEMA = Path(__file__).resolve().parents[3] / "shared/data/epcis/EPCIS-JSON-Schema.json"


def schema_path() -> Path:
    path = Path(os.environ[SCHEMA_ENV]) if os.environ.get(SCHEMA_ENV) else _SHARED_SCHEMA
    if not path.is_file():
        raise FileNotFoundError(
            f"GS1 EPCIS JSON schema not found at {path}; set ${SCHEMA_ENV} to its path "
            "(https://ref.gs1.org/standards/epcis/epcis-json-schema.json)")
    return path


@lru_cache(maxsize=4)
def _validator(path: str) -> jsonschema.Draft7Validator:
    schema = json.loads(Path(path).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate(doc: Any) -> None:
    """Raise DocumentError (event index, field) unless doc passes GS1's JSON schema."""
    if not isinstance(doc, dict):
        raise DocumentError("$", "an EPCIS document is a JSON object")
    errors = list(_validator(str(schema_path())).iter_errors(doc))
    if not errors:
        return
    error = max(_leaves(errors), key=lambda e: len(e.absolute_path))  # the most specific
    path = list(error.absolute_path)
    event = None
    for i, part in enumerate(path[:-1]):
        if part == "eventList" and isinstance(path[i + 1], int):
            event, path = path[i + 1], path[i + 2:]
            break
    field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path)
    raise DocumentError(field.replace(".[", "[") or "$", error.message[:300], event)


def _leaves(errors: list) -> list:
    # anyOf / if-then branches wrap the real failure: collect the innermost errors
    out = []
    for error in errors:
        out += _leaves(error.context) if error.context else [error]
    return out


def event_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    body = doc.get("epcisBody", {})
    if doc.get("type") == "EPCISQueryDocument":
        return body.get("queryResults", {}).get("resultsBody", {}).get("eventList", [])
    return body.get("eventList", [])


def extension_context(doc: dict[str, Any]) -> dict[str, str]:
    """The prefix → namespace entries of the document's @context (for user extensions)."""
    context = doc.get("@context", [])
    out: dict[str, str] = {}
    for item in context if isinstance(context, list) else [context]:
        if isinstance(item, dict):
            out.update({k: v for k, v in item.items() if isinstance(v, str)})
    return out


def read_document(doc: Any, check_schema: bool = True) -> list[Event]:
    """Validate an EPCISDocument / EPCISQueryDocument and return its events."""
    if check_schema:
        validate(doc)
    elif not isinstance(doc, dict):
        raise DocumentError("$", "an EPCIS document is a JSON object")
    events = []
    context: dict[str, str] | None = None
    for index, item in enumerate(event_list(doc)):
        try:
            if "recordTime" in item:  # the repository's own stamp: checked, then dropped
                parse_time(item["recordTime"], "recordTime")
            event = Event.from_json(item)
        except DocumentError as exc:
            raise exc.at_event(index) from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise DocumentError("$", f"malformed event: {exc!r}", index) from exc
        if event.event_id is None:
            if context is None:
                context = extension_context(doc)
            event = replace(event, event_id=event_hash(item, context))
        events.append(event)
    return events


def write_document(events: list[Event], context: dict[str, str] | None = None,
                   record_times: list[int] | None = None) -> dict[str, Any]:
    items = []
    for i, event in enumerate(events):
        item = event.to_json()
        if record_times is not None:
            item["recordTime"] = _utc(record_times[i])
        items.append(item)
    return {"@context": [EPCIS_CONTEXT] + ([context] if context else []),
            "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": _utc(int(datetime.now(UTC).timestamp() * 1000)),
            "epcisBody": {"eventList": items}}


def _utc(ms: int) -> str:
    from .epcis import format_time

    return format_time(ms, "+00:00").replace("+00:00", "Z")
