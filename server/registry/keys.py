"""The registry as ingest needs it: who may sign what, when, and which key each node has.

Invariant: a gateway key signs for its own gateway only, for batches created in
[valid_from, revoked_at) and received before revoked_at + REVOCATION_GRACE_MS; old keys
are kept for ever so archived envelopes stay verifiable.

Why the receive time too: `created` is the signer's own claim. A thief holding a revoked
key could stamp any batch with a `created` before the revocation (backfill=True lifts the
clock check too), so after the grace nothing that key signed is accepted, whatever it
claims. The grace lets batches the gateway sealed before the revocation, still in
flight or in its outbox, arrive; a longer backlog is refused (and kept in `rejects`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..store.rows import GatewayKeyRow


def kid_of(public_key: bytes) -> bytes:
    """Key id: the first 16 bytes of SHA-256 of the raw public key (envelope.key_id)."""
    return hashlib.sha256(public_key).digest()[:16]


# Batches a key sealed before its revocation are accepted this long after it (server
# receive time); see the module docstring.
REVOCATION_GRACE_MS = 10 * 60 * 1000

# Reasons a registered key may not sign a batch (reject reasons).
KEY_NOT_YET_VALID = "key_not_yet_valid"
REVOKED_KEY = "revoked_key"
WRONG_GATEWAY = "gateway_mismatch"


@dataclass(frozen=True)
class Key:
    row: GatewayKeyRow
    public: Ed25519PublicKey

    def refuses(self, gateway: str, created: int, received: int | None = None,
                grace_ms: int = REVOCATION_GRACE_MS) -> str | None:
        """Why this key may not sign a batch of `gateway` created at `created` (the
        signer's claim) and received at `received` (our clock), or None."""
        if self.row.gateway != gateway:
            return WRONG_GATEWAY
        if created < self.row.valid_from:
            return KEY_NOT_YET_VALID
        revoked = self.row.revoked_at
        if revoked is not None and (created >= revoked or (
                received is not None and received >= revoked + grace_ms)):
            return REVOKED_KEY
        return None


class KeyRing:
    """Gateway keys by kid, node keys by node id, sites by gateway; built from the store."""

    def __init__(self, registry: dict[str, list]) -> None:
        # Filed under the kid the public key hashes to, not the stored kid: a row whose
        # public key was swapped under an old kid then matches no envelope's kid.
        self.keys = {kid_of(r.public_key): Key(r, Ed25519PublicKey.from_public_bytes(
            r.public_key)) for r in registry.get("keys", [])}
        self.nodes = {r.id: r.key for r in registry.get("nodes", [])}
        self.sites = {r.id: r.site for r in registry.get("gateways", [])}

    def public_key(self, kid: bytes) -> Ed25519PublicKey | None:
        key = self.keys.get(kid)
        return key.public if key else None

    def site_of(self, gateway: str) -> str:
        return self.sites.get(gateway, "unknown")
