"""Signed batch envelopes, gateway -> server: COSE_Sign1 (RFC 9052) with Ed25519.

A third party verifies one with any COSE library and the gateway's public key:

    COSE_Sign1 = #6.18([ protected: bstr .cbor {1: alg, 4: kid}, unprotected: {},
                         payload: bstr .cbor Batch, signature: bstr(64) ])
    Sig_structure = ["Signature1", protected, external_aad, payload]
    external_aad  = the MQTT topic the envelope is published on (UTF-8)
    alg           = -19 (Ed25519, RFC 9864) when signing; -8 (EdDSA) is also accepted
    kid           = the first 16 bytes of SHA-256 of the 32-byte raw public key

    Batch = {0: 1 (version), 1: gateway id (text), 2: batch seq (uint),
             3: created (UTC ms), 4: [[record bytes, node tag], ...], 5: backfill (bool)}

Node records travel verbatim with their HMAC tags, so the server re-checks each node
tag on the very bytes the board made. Verification works on the bytes received and
never re-encodes anything (DESIGN.md, "Authenticity and integrity").

Errors: every failure raises EnvelopeError(reason, detail); reasons are short stable
words (`oversize`, `malformed`, `unknown_key`, `bad_signature`, ...) for counting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = -19  # RFC 9864, fully specified
ALG_EDDSA = -8  # RFC 9053, deprecated by RFC 9864 but still what many libraries emit
ACCEPTED_ALGS = (ALG_ED25519, ALG_EDDSA)
COSE_SIGN1_TAG = 18
VERSION = 1
MAX_ENVELOPE = 1 << 20  # bytes; a batch is far smaller, anything larger is refused unread
MAX_RECORDS = 10_000


class EnvelopeError(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Batch:
    gateway: str
    seq: int
    created: int
    records: tuple[tuple[bytes, bytes], ...]  # (record bytes, node tag)
    backfill: bool = False


@dataclass(frozen=True)
class Opened:
    batch: Batch
    kid: bytes
    alg: int
    payload: bytes  # the signed bytes exactly as received


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(raw_public(key)).digest()[:16]


def _sig_structure(protected: bytes, aad: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, aad, payload])


def encode_batch(batch: Batch) -> bytes:
    return cbor2.dumps({
        0: VERSION, 1: batch.gateway, 2: batch.seq, 3: batch.created,
        4: list(batch.records), 5: batch.backfill,  # (record, tag) pairs: CBOR arrays
    })


def seal(batch: Batch, key: Ed25519PrivateKey, topic: str, alg: int = ALG_ED25519) -> bytes:
    """Sign a batch for publication on `topic`; returns the COSE_Sign1 bytes."""
    if alg not in ACCEPTED_ALGS:
        raise ValueError(f"alg: {alg} is not an Ed25519 algorithm id")
    protected = cbor2.dumps({1: alg, 4: key_id(key.public_key())})
    payload = encode_batch(batch)
    signature = key.sign(_sig_structure(protected, topic.encode(), payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def _decode_batch(payload: bytes) -> Batch:
    try:
        body = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as e:
        raise EnvelopeError("malformed", f"payload: {e}") from None
    if not isinstance(body, dict) or set(body) != {0, 1, 2, 3, 4, 5}:
        raise EnvelopeError("malformed", "payload: keys must be 0..5")
    if body[0] != VERSION:
        raise EnvelopeError("malformed", f"payload version {body[0]!r}")
    gateway, seq, created, records, backfill = body[1], body[2], body[3], body[4], body[5]
    if not isinstance(gateway, str) or not gateway:
        raise EnvelopeError("malformed", "gateway: expected text")
    for name, value in (("seq", seq), ("created", created)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise EnvelopeError("malformed", f"{name}: expected unsigned integer")
    if not isinstance(backfill, bool):
        raise EnvelopeError("malformed", "backfill: expected bool")
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise EnvelopeError("malformed", "records: expected a list")
    return Batch(gateway, seq, created, _pairs(records), backfill)


def _pairs(records: list) -> tuple[tuple[bytes, bytes], ...]:
    """The [record, tag] pairs as tuples, each checked: a list of two byte strings, the
    second 32 bytes long. The checks run batch-wide in C (map, zip, set: about 0.2 instead
    of 1.1 us a pair); only when they fail does the loop below find the first bad pair
    (cbor2 yields exactly list and bytes, so the fast test accepts what the loop does)."""
    if records and set(map(type, records)) == {list} and set(map(len, records)) == {2}:
        data, tags = zip(*records, strict=True)
        if set(map(type, data)) == {bytes} == set(map(type, tags)) \
                and set(map(len, tags)) == {32}:
            return tuple(zip(data, tags, strict=True))
    for i, pair in enumerate(records):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(p, bytes) for p in pair) or len(pair[1]) != 32):
            raise EnvelopeError("malformed", f"records[{i}]: expected [record, 32-byte tag]")
    return tuple((pair[0], pair[1]) for pair in records)


def open_envelope(
    data: bytes, topic: str, public_key: Callable[[bytes], Ed25519PublicKey | None]
) -> Opened:
    """Verify a COSE_Sign1 envelope received on `topic`; return its batch.

    `public_key(kid)` returns the gateway key registered under kid, or None. Whether the
    key may sign *now* (rotation, revocation) is the caller's decision, made on the
    returned kid and batch.
    """
    if len(data) > MAX_ENVELOPE:
        raise EnvelopeError("oversize", f"{len(data)} bytes")
    try:
        outer = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as e:
        raise EnvelopeError("malformed", f"envelope: {e}") from None
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != COSE_SIGN1_TAG:
        raise EnvelopeError("malformed", "envelope: not a tagged COSE_Sign1")
    parts = outer.value  # cbor2 gives arrays inside a tag as tuples
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise EnvelopeError("malformed", "envelope: COSE_Sign1 has four parts")
    protected, unprotected, payload, signature = parts
    if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping)
            and isinstance(payload, bytes) and isinstance(signature, bytes)):
        raise EnvelopeError("malformed", "envelope: wrong part types")
    try:
        header = cbor2.loads(protected)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError):
        raise EnvelopeError("malformed", "protected header: not CBOR") from None
    if not isinstance(header, dict):
        raise EnvelopeError("malformed", "protected header: expected a map")
    alg, kid = header.get(1), header.get(4)
    if alg not in ACCEPTED_ALGS:
        raise EnvelopeError("bad_alg", f"alg {alg!r}")
    if not isinstance(kid, bytes):
        raise EnvelopeError("malformed", "protected header: kid missing")
    key = public_key(kid)
    if key is None:
        raise EnvelopeError("unknown_key", kid.hex())
    try:
        key.verify(signature, _sig_structure(protected, topic.encode(), payload))
    except InvalidSignature:
        raise EnvelopeError("bad_signature", kid.hex()) from None
    return Opened(_decode_batch(payload), kid, alg, payload)
