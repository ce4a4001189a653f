"""Verified ingest: signed gateway batches in, records stored once, everything else rejected.

    core.Ingest.handle(topic, payload, received_ms) -> Outcome     (no MQTT, no threads)
    worker.Worker                                                  (paho-mqtt adapter)

Reject reasons (the `reason` column of the rejects table; stable words, for counting):

    envelope level   bad_topic, oversize, malformed, bad_alg, unknown_key, bad_signature,
                     gateway_mismatch, key_not_yet_valid, revoked_key, future_batch, replay
    record level     bad_record, unknown_node, bad_tag, forgery (also raises an alert)

Errors inside this package:

    IngestError          base
    └── RecordError      record bytes that are not a valid node record; names the field
"""

from __future__ import annotations


class IngestError(ValueError):
    """Base of the ingest errors."""


class RecordError(IngestError):
    """Record bytes that are not a valid node record; the message names the field."""
