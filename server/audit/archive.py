"""Archive files: every stored envelope, verbatim, plus the keys needed to check them.

Format (a CBOR sequence, RFC 8742):

    item 0:  {"format": "metrotrace-archive", "version": 1, "registry": {...}}
    item n:  [envelope id, topic, received UTC ms, envelope bytes]

The registry part holds each gateway key (public key, valid_from, revoked_at) and each node
key. Node keys are secrets: an archive is handed over like the key registry itself.
Invariant: envelope bytes are copied, never re-encoded, so their signatures still verify.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import cbor2

from ..store.rows import Store

FORMAT = "metrotrace-archive"
VERSION = 1


class ArchiveError(ValueError):
    """The archive file is not readable as an archive (damaged framing or header)."""


def registry_json(registry: dict[str, list], secrets: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gateways": {g.id: {"site": g.site} for g in registry.get("gateways", [])},
        "keys": [{"kid": k.kid.hex(), "gateway": k.gateway, "public_key": k.public_key.hex(),
                  "valid_from": k.valid_from, "revoked_at": k.revoked_at}
                 for k in registry.get("keys", [])],
        "nodes": [{"id": n.id.hex(), "gateway": n.gateway,
                   **({"key": n.key.hex()} if secrets else {})}
                  for n in registry.get("nodes", [])],
    }
    return out


def write_archive(store: Store, path: str | Path) -> int:
    """Write the archive; returns the number of envelopes written."""
    n = 0
    with open(path, "wb") as f:
        cbor2.dump({"format": FORMAT, "version": VERSION,
                    "registry": registry_json(store.registry())}, f)
        for env in store.envelopes():
            cbor2.dump([env.id, env.topic, env.received, env.data], f)
            n += 1
    return n


def read_archive(f: BinaryIO) -> tuple[dict[str, Any], Iterator[tuple[int, str, int, bytes]]]:
    """(header, iterator of envelope items); damage raises ArchiveError with the offset."""
    decoder = cbor2.CBORDecoder(f)
    try:
        header = decoder.decode()
    except (cbor2.CBORDecodeError, ValueError, EOFError) as e:
        raise ArchiveError(f"header: {e}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArchiveError("header: not a metrotrace archive")
    if header.get("version") != VERSION:
        raise ArchiveError(f"header: version {header.get('version')!r} not supported")

    def items() -> Iterator[tuple[int, str, int, bytes]]:
        while True:
            offset = f.tell()
            if not f.read(1):
                return
            f.seek(offset)
            try:
                item = decoder.decode()
            except (cbor2.CBORDecodeError, ValueError, EOFError, OverflowError) as e:
                raise ArchiveError(f"offset {offset}: {e}") from None
            if (not isinstance(item, list) or len(item) != 4
                    or not isinstance(item[3], bytes) or not isinstance(item[1], str)):
                raise ArchiveError(f"offset {offset}: not an envelope item")
            yield item[0], item[1], item[2], item[3]

    return header, items()
