"""Keys obtained independently of what is verified: `metrotrace verify --trusted-keys FILE
[--node-keys FILE]` (each repeatable, e.g. one keygen output per gateway).

Without them, verify can only use the keys stored inside the database or archive it checks,
and a forger who rewrote that source could have swapped a public key (and its kid) and
re-signed everything: every signature would verify. So the report always says where its
keys came from (`Report.trust`).

Accepted files (every kid is recomputed from its public key, SHA-256[:16], never read):

    gateway keys   a registry file (TOML or JSON, as `metrotrace registry load` reads);
                   `metrotrace gateway keygen` output or a gateway birth message (JSON
                   {"gateway"?: id, "keys": [{"public", "valid_from", "valid_until",
                   "revoked"?}, ...]}; without "gateway" the key is trusted for whichever
                   gateway the verified source binds it to)
    node keys      a registry file's [[node]] entries; the gateway's node key file
                   ({"nodes": {hex id: {"key": hex}}}). Node tags are HMAC-SHA256: checking
                   them needs the node's secret key, so this file is a secret.

Errors: TrustError (a file that is none of these; the message names the file and field).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry import RegistryError
from ..registry.keys import kid_of
from ..registry.load import parse, read_file
from ..store.rows import GatewayKeyRow, NodeRow

SOURCE = "source"  # Report.trust value: keys read from the verified database/archive itself


class TrustError(ValueError):
    """A trusted-keys or node-keys file that cannot be read; names the file and field."""


@dataclass
class Trusted:
    """Independently obtained keys: gateway keys as archive-style dicts, node keys."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    nodes: dict[bytes, bytes] = field(default_factory=dict)
    keys_from: str | None = None  # the file(s) the gateway keys came from
    nodes_from: str | None = None  # the file(s) the node keys came from


def _read(path: Path) -> tuple[list | None, Any]:
    """(registry rows, None) for a registry file (TOML or JSON), else (None, its JSON)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TrustError(f"{path}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            return read_file(path), None  # not JSON: a TOML registry file or nothing
        except RegistryError as e:
            raise TrustError(f"{path}: {e}") from None
    if isinstance(data, dict) and set(data) & {"site", "gateway", "node"} \
            and not isinstance(data.get("keys"), list):
        try:
            return parse(data), None
        except RegistryError as e:
            raise TrustError(f"{path}: {e}") from None
    return None, data


def _int_or_none(value: Any, where: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TrustError(f"{where}: expected UTC ms")


def _announced(path: Path, data: dict) -> list[dict[str, Any]]:
    """Keys of `gateway keygen` output or a birth message."""
    gateway = data.get("gateway")
    out = []
    for i, k in enumerate(data["keys"]):
        where = f"{path}: keys[{i}]"
        try:
            public = bytes.fromhex(k["public"])
        except (KeyError, TypeError, ValueError):
            raise TrustError(f"{where}.public: expected a hex public key") from None
        if len(public) != 32:
            raise TrustError(f"{where}.public: expected 32 bytes")
        ends = [t for t in (_int_or_none(k.get("valid_until"), f"{where}.valid_until"),
                            _int_or_none(k.get("revoked"), f"{where}.revoked"))
                if t is not None]
        out.append({"kid": kid_of(public).hex(), "gateway": gateway,
                    "public_key": public.hex(),
                    "valid_from": _int_or_none(k.get("valid_from"), f"{where}.valid_from") or 0,
                    "revoked_at": min(ends) if ends else None})
    return out


def load(trusted_keys: str | Path | Sequence[str | Path] | None,
         node_keys: str | Path | Sequence[str | Path] | None = None) -> Trusted:
    """Keys from one file or several of each kind (e.g. one keygen output per gateway)."""
    trusted = Trusted()
    key_files, node_files = _paths(trusted_keys), _paths(node_keys)
    for path in key_files:
        rows, data = _read(path)
        if rows is None:
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise TrustError(f"{path}: neither a registry file nor keygen output "
                                 "(no 'keys' list)")
            keys = _announced(path, data)
        else:
            keys = [{"kid": r.kid.hex(), "gateway": r.gateway, "public_key": r.public_key.hex(),
                     "valid_from": r.valid_from, "revoked_at": r.revoked_at}
                    for r in rows if isinstance(r, GatewayKeyRow)]
            nodes = {r.id: r.key for r in rows if isinstance(r, NodeRow)}
            if nodes:
                trusted.nodes.update(nodes)
                node_files = [path, *node_files]
        if not keys:
            raise TrustError(f"{path}: holds no gateway key")
        trusted.keys.extend(keys)
    for path in node_files:
        if path not in key_files:
            trusted.nodes.update(_node_file(path))
    trusted.keys_from = ", ".join(map(str, key_files)) or None
    trusted.nodes_from = ", ".join(map(str, dict.fromkeys(node_files))) or None
    return trusted


def _paths(given: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if given is None:
        return []
    if isinstance(given, str | Path):
        return [Path(given)]
    return [Path(p) for p in given]


def _node_file(path: Path) -> dict[bytes, bytes]:
    rows, data = _read(path)
    if rows is not None:
        nodes = {r.id: r.key for r in rows if isinstance(r, NodeRow)}
    else:
        try:
            nodes = {bytes.fromhex(n): bytes.fromhex(v["key"])
                     for n, v in data["nodes"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TrustError(f"{path}: not a node key file ({{\"nodes\": {{id: {{\"key\": "
                             f"hex}}}}}}) nor a registry file: {e}") from None
    if not nodes:
        raise TrustError(f"{path}: holds no node key")
    return nodes
