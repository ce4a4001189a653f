"""`metrotrace verify`: every stored envelope, node tag and decoded column checked again,
and each node's `prev` chain and each gateway's batch seqs walked for deletions (chain.py).

Invariant: uses only public gateway keys, node keys and the stored bytes; a problem is a
dict naming what failed and why, and verification goes on to the end (or, in a damaged
archive file, to the point where the file can no longer be read). A key is filed under the
kid its public key hashes to (SHA-256[:16], the envelope spec), never under the kid
written beside it; the keys come from trusted files when given (trust.py), else from the
verified source itself, and the report says which (`trust`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from metrotrace.gateway import envelope as cose

from ..ingest import RecordError
from ..ingest.columns import decode
from ..ingest.core import gateway_of
from ..registry.keys import REVOCATION_GRACE_MS, kid_of
from ..store.rows import Store
from .archive import ArchiveError, read_archive
from .chain import ChainWalk, batch_gaps, walk_unsorted
from .trust import SOURCE, Trusted


@dataclass
class Report:
    envelopes: int = 0
    records: int = 0
    stored_rows: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # do not fail verification
    # where the keys came from: a trusted file's path, or SOURCE (the verified data itself)
    trust: dict[str, str] = field(default_factory=lambda: {"gateway_keys": SOURCE,
                                                           "node_keys": SOURCE})

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> dict[str, Any]:
        return {"ok": self.ok, "envelopes": self.envelopes, "records": self.records,
                "stored_rows": self.stored_rows, "problems": len(self.problems),
                "warnings": len(self.warnings), **self.trust}


@dataclass
class _Found:
    """What the verified envelopes hold: their records' chain links and their batch seqs."""

    records: list[tuple[bytes, int, int, int]] = field(default_factory=list)  # node seq prev env
    batches: dict[str, set[int]] = field(default_factory=dict)  # gateway -> batch seqs
    # (node, seq, prev) read, unverified, from envelopes that failed: already a problem
    # each, they still link their chains so one damaged envelope is not also N chain gaps
    unverified: list[tuple[bytes, int, int]] = field(default_factory=list)


def _unverified_links(data: bytes) -> list[tuple[bytes, int, int]]:
    """Best effort: the chain links of an envelope that does not verify (none if unreadable)."""
    try:
        body = cbor2.loads(cbor2.loads(data).value[2])
        pairs = body[4]
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, AttributeError,
            IndexError, KeyError):
        return []
    links = []
    for pair in pairs if isinstance(pairs, list) else ():
        try:
            row = decode(pair[0], pair[1])
        except (RecordError, TypeError, IndexError):
            continue
        links.append((row.node, row.seq, row.prev))
    return links


def _by_kid(keys: list[dict], report: Report) -> dict[bytes, dict]:
    """Keys filed under the kid their public key hashes to; a stated kid that differs is a
    problem (a swapped public key), and the key is never found under the stated kid."""
    out = {}
    for k in keys:
        try:
            public = bytes.fromhex(k["public_key"])
            Ed25519PublicKey.from_public_bytes(public)
        except ValueError:
            report.problems.append({"reason": "bad_public_key", "kid": k["kid"],
                                    "gateway": k["gateway"]})
            continue
        kid = kid_of(public)
        if kid.hex() != k["kid"]:
            report.problems.append({"reason": "kid_mismatch", "kid": k["kid"],
                                    "gateway": k["gateway"], "public_key_hashes_to": kid.hex()})
        out[kid] = {**k, "kid": kid.hex()}
    return out


class _Keys:
    def __init__(self, keys: list[dict], nodes: list[dict], trusted: Trusted | None,
                 report: Report) -> None:
        trusted = trusted or Trusted()
        source = _by_kid(keys, report)
        self.gateway_keys = source
        if trusted.keys_from:
            report.trust["gateway_keys"] = trusted.keys_from
            self.gateway_keys = {
                kid: k if k["gateway"] else {**k, "gateway": source.get(kid, k)["gateway"]}
                for kid, k in _by_kid(trusted.keys, report).items()}
            for kid, k in source.items():
                if kid not in self.gateway_keys:
                    report.warnings.append({"reason": "key_not_trusted", "kid": kid.hex(),
                                            "gateway": k["gateway"]})
        self.publics = {kid: Ed25519PublicKey.from_public_bytes(bytes.fromhex(k["public_key"]))
                        for kid, k in self.gateway_keys.items()}
        self.nodes = {bytes.fromhex(n["id"]): bytes.fromhex(n["key"]) for n in nodes
                      if n.get("key")}
        if trusted.nodes_from:
            report.trust["node_keys"] = trusted.nodes_from
            for node, key in self.nodes.items():
                if trusted.nodes.get(node, key) != key:
                    report.warnings.append({"reason": "node_key_differs_from_trusted",
                                            "node": node.hex()})
            self.nodes = dict(trusted.nodes)


def _check_envelope(keys: _Keys, env_id: int, topic: str, received: int, data: bytes,
                    report: Report, seen: set[bytes] | None, found: _Found) -> None:
    report.envelopes += 1
    where = {"envelope_id": env_id, "topic": topic}
    try:
        opened = cose.open_envelope(data, topic, keys.publics.get)
    except cose.EnvelopeError as e:
        report.problems.append({**where, "reason": e.reason, "detail": e.detail})
        found.unverified.extend(_unverified_links(data))
        return
    batch = opened.batch
    key = keys.gateway_keys[opened.kid]
    if batch.gateway != gateway_of(topic) or key["gateway"] != batch.gateway:
        report.problems.append({**where, "reason": "gateway_mismatch"})
    revoked = key["revoked_at"]
    if batch.created < key["valid_from"] or (revoked is not None and batch.created >= revoked):
        report.problems.append({**where, "reason": "key_not_valid_at_created",
                                "created": batch.created})
    elif revoked is not None and received >= revoked + REVOCATION_GRACE_MS:
        # ingest refuses these (registry/keys.py): a revoked key's backdated signature
        report.problems.append({**where, "reason": "received_after_revocation",
                                "received": received, "revoked_at": revoked})
    found.batches.setdefault(batch.gateway, set()).add(batch.seq)
    for data_, tag in batch.records:
        report.records += 1
        try:
            row = decode(data_, tag)
        except RecordError as e:  # rejected at ingest too; listed, it is not a stored record
            if seen is None:
                report.problems.append({**where, "reason": "bad_record", "detail": str(e)})
            continue
        node_key = keys.nodes.get(row.node)
        if node_key is None or not hmac.compare_digest(
                hmac.digest(node_key, data_, "sha256"), tag):
            if seen is None:  # ingest rejected it; the store never claimed it
                report.problems.append({**where, "node": row.node.hex(), "seq": row.seq,
                                        "reason": "bad_tag" if node_key else "unknown_node"})
            continue
        found.records.append((row.node, row.seq, row.prev, env_id))
        if seen is not None:
            seen.add(_digest(data_, tag))


def _digest(data: bytes, tag: bytes) -> bytes:
    return hashlib.sha256(data + tag).digest()[:16]


def verify_store(store: Store, trusted: Trusted | None = None) -> Report:
    """Envelopes, then every stored record: tag good, bytes inside a verified envelope,
    columns equal to what the bytes say; no gap in a node's chain; every good record of a
    verified envelope stored (unless ingest rejected it as unknown_node)."""
    from .archive import registry_json

    reg = registry_json(store.registry())
    report = Report()
    keys = _Keys(reg["keys"], reg["nodes"], trusted, report)
    verified: set[bytes] = set()
    found = _Found()
    for env in store.envelopes():
        _check_envelope(keys, env.id, env.topic, env.received, env.data, report, verified,
                        found)
    chain = ChainWalk()
    stored: set[tuple[bytes, int]] = set()
    for row, envelope_id in store.stored_records():  # in (node, seq) order
        report.stored_rows += 1
        chain.add(row.node, row.seq, row.prev)
        stored.add((row.node, row.seq))
        where = {"node": row.node.hex(), "seq": row.seq, "envelope_id": envelope_id}
        node_key = keys.nodes.get(row.node)
        if node_key is None or not hmac.compare_digest(
                hmac.digest(node_key, row.record, "sha256"), row.tag):
            report.problems.append({**where, "reason": "bad_tag"})
        elif _digest(row.record, row.tag) not in verified:
            report.problems.append({**where, "reason": "not_in_a_verified_envelope"})
        else:
            try:
                again = decode(row.record, row.tag)
            except RecordError as e:
                report.problems.append({**where, "reason": "bad_record", "detail": str(e)})
                continue
            if again != row:
                changed = [n for n, a, b in zip(row._fields, row, again, strict=True) if a != b]
                report.problems.append({**where, "reason": "columns_differ_from_bytes",
                                        "fields": changed})
    report.problems.extend(chain.problems)
    refused = {(r.node, r.seq) for r in store.rejects(reason="unknown_node", limit=1 << 62)}
    for node, seq, _prev, env_id in found.records:
        if (node, seq) not in stored and (node, seq) not in refused:
            stored.add((node, seq))  # report each once, however many envelopes carry it
            report.problems.append({"reason": "missing_from_store", "node": node.hex(),
                                    "seq": seq, "envelope_id": env_id})
    report.warnings.extend(batch_gaps(found.batches))
    return report


def verify_archive(path: str | Path, trusted: Trusted | None = None) -> Report:
    report = Report()
    found = _Found()
    with open(path, "rb") as f:
        try:
            header, items = read_archive(f)
            keys = _Keys(header["registry"]["keys"], header["registry"]["nodes"], trusted,
                         report)
            for env_id, topic, received, data in items:
                _check_envelope(keys, env_id, topic, received, data, report, None, found)
        except ArchiveError as e:
            report.problems.append({"reason": "archive_damaged", "detail": str(e)})
    report.problems.extend(walk_unsorted(
        [*((n, s, p) for n, s, p, _ in found.records), *found.unverified]))
    report.warnings.extend(batch_gaps(found.batches))
    return report
