"""The registry as ingest needs it: who may sign what, when, and which key each node has.

Invariant: a gateway key signs for its own gateway only, for batches created in
[valid_from, revoked_at); old keys are kept for ever so archived envelopes stay verifiable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..store.rows import GatewayKeyRow


def kid_of(public_key: bytes) -> bytes:
    """Key id: the first 16 bytes of SHA-256 of the raw public key (envelope.key_id)."""
    return hashlib.sha256(public_key).digest()[:16]


# Reasons a registered key may not sign a batch (reject reasons).
KEY_NOT_YET_VALID = "key_not_yet_valid"
REVOKED_KEY = "revoked_key"
WRONG_GATEWAY = "gateway_mismatch"


@dataclass(frozen=True)
class Key:
    row: GatewayKeyRow
    public: Ed25519PublicKey

    def refuses(self, gateway: str, created: int) -> str | None:
        """Why this key may not sign a batch of `gateway` created at `created`, or None."""
        if self.row.gateway != gateway:
            return WRONG_GATEWAY
        if created < self.row.valid_from:
            return KEY_NOT_YET_VALID
        if self.row.revoked_at is not None and created >= self.row.revoked_at:
            return REVOKED_KEY
        return None


class KeyRing:
    """Gateway keys by kid, node keys by node id, sites by gateway; built from the store."""

    def __init__(self, registry: dict[str, list]) -> None:
        self.keys = {r.kid: Key(r, Ed25519PublicKey.from_public_bytes(r.public_key))
                     for r in registry.get("keys", [])}
        self.nodes = {r.id: r.key for r in registry.get("nodes", [])}
        self.sites = {r.id: r.site for r in registry.get("gateways", [])}

    def public_key(self, kid: bytes) -> Ed25519PublicKey | None:
        key = self.keys.get(kid)
        return key.public if key else None

    def site_of(self, gateway: str) -> str:
        return self.sites.get(gateway, "unknown")
