"""The gateway's Ed25519 signing keys: generation, key ids, rotation with an overlap.

A key directory holds one PKCS#8 PEM per key (`gw-{kid}.pem`, mode 0600, never
group/world readable) and `keyring.json`, the schedule:

    {"keys": [{"kid": hex, "valid_from": ms, "valid_until": ms | null}, ...]}

Rotation at time T with overlap D makes a new key that signs from T, and keeps the old
one valid until T + D: batches the old key sealed before T may still sit in the
outbox and must stay acceptable to the server while they drain. Both public keys are
announced in the birth message, the new one endorsed by the old (an Ed25519 signature
by the old key over b"metrotrace-rotate" | new public key | valid_from as 8 bytes BE),
so a server that trusts the old key can register the new one.

Revocation (`revoke`, for a key that may be compromised): the key stops signing at
once, its entry keeps `revoked` (the time) and stays announced, so the server can
refuse it; if it was the signing key a new key replaces it, without an endorsement (a
revoked key's word is worth nothing: register the new kid out of band). Batches it
sealed that still wait in the outbox are sealed again with the new key before they
are published (uplink.py, Batcher.reseal).

Invariant: exactly one key signs at any instant: the newest whose valid_from <= now
and whose validity has not ended, never a revoked one; a key file is never written
world-readable.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from .envelope import key_id, raw_public
from .errors import KeyFileError

RING = "keyring.json"
ENDORSE = b"metrotrace-rotate"


@dataclass(frozen=True)
class Entry:
    kid: bytes
    valid_from: int
    valid_until: int | None
    key: Ed25519PrivateKey
    endorsement: bytes | None = None  # by the key this one replaced
    revoked: int | None = None  # when it was revoked

    def valid_at(self, now: int) -> bool:
        return (self.revoked is None and self.valid_from <= now
                and (self.valid_until is None or now < self.valid_until))


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    # O_EXCL and mode 0600 at creation: the key is never readable by others, not even
    # for the moment between creating the file and a chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: readable by others (mode {mode & 0o777:o}); chmod 600")
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def _endorsement(old: Ed25519PrivateKey, new: Ed25519PrivateKey, valid_from: int) -> bytes:
    return old.sign(ENDORSE + raw_public(new.public_key()) + valid_from.to_bytes(8, "big"))


class KeyRing:
    def __init__(self, directory: Path, entries: list[Entry]) -> None:
        self.directory = directory
        self.entries = sorted(entries, key=lambda e: e.valid_from)

    @classmethod
    def load(cls, directory: str | Path) -> KeyRing:
        directory = Path(directory)
        try:
            ring = json.loads((directory / RING).read_text())
        except FileNotFoundError:
            raise KeyFileError(f"{directory}: no {RING}; run `metrotrace gateway keygen`") from None
        entries = []
        for item in ring["keys"]:
            kid = bytes.fromhex(item["kid"])
            key = read_private_key(directory / f"gw-{item['kid']}.pem")
            if key_id(key.public_key()) != kid:
                raise KeyFileError(f"gw-{item['kid']}.pem: key does not match its kid")
            endorsement = item.get("endorsement")
            entries.append(Entry(kid, item["valid_from"], item.get("valid_until"), key,
                                 bytes.fromhex(endorsement) if endorsement else None,
                                 item.get("revoked")))
        return cls(directory, entries)

    def _save(self) -> None:
        ring = {"keys": [
            {"kid": e.kid.hex(), "valid_from": e.valid_from, "valid_until": e.valid_until,
             **({"endorsement": e.endorsement.hex()} if e.endorsement else {}),
             **({"revoked": e.revoked} if e.revoked is not None else {})}
            for e in self.entries
        ]}
        tmp = self.directory / (RING + ".tmp")
        tmp.write_text(json.dumps(ring, indent=2) + "\n")
        os.replace(tmp, self.directory / RING)

    def _new_key(self) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        write_private_key(self.directory / f"gw-{key_id(key.public_key()).hex()}.pem", key)
        return key

    @classmethod
    def create(cls, directory: str | Path, now: int) -> KeyRing:
        """A new key directory with one key, valid from now on."""
        directory = Path(directory)
        if (directory / RING).exists():
            raise KeyFileError(f"{directory}: already has a key ring; use --rotate")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ring = cls(directory, [])
        key = ring._new_key()
        ring.entries = [Entry(key_id(key.public_key()), now, None, key)]
        ring._save()
        return ring

    def rotate(self, now: int, overlap_ms: int) -> Entry:
        """A new key signs from now; the current one stays valid for overlap_ms."""
        old = self.signing(now)
        key = self._new_key()
        new = Entry(key_id(key.public_key()), now, None, key,
                    _endorsement(old.key, key, now))
        self.entries = [
            Entry(e.kid, e.valid_from, now + overlap_ms, e.key, e.endorsement)
            if e.kid == old.kid else e
            for e in self.entries
        ] + [new]
        self._save()
        return new

    def revoke(self, kid: bytes, now: int) -> Entry | None:
        """Revoke key `kid` from now; returns the key that replaces it, if it was the
        one signing."""
        entry = next((e for e in self.entries if e.kid == kid), None)
        if entry is None:
            raise KeyFileError(f"{self.directory}: no key {kid.hex()}")
        was_signing = entry.valid_at(now) and self.signing(now).kid == kid
        self.entries = [Entry(e.kid, e.valid_from, e.valid_until, e.key, e.endorsement, now)
                        if e.kid == kid else e for e in self.entries]
        replacement = None
        if was_signing:
            key = self._new_key()
            replacement = Entry(key_id(key.public_key()), now, None, key)
            self.entries.append(replacement)
        self._save()
        return replacement

    def revoked(self) -> set[bytes]:
        return {e.kid for e in self.entries if e.revoked is not None}

    def signing(self, now: int) -> Entry:
        valid = [e for e in self.entries if e.valid_at(now)]
        if not valid:
            raise KeyFileError(f"{self.directory}: no key is valid now")
        return valid[-1]

    def announce(self, now: int) -> list[dict]:
        """Public keys still valid or yet to come, and every revoked one, for the birth
        message."""
        return [
            {"kid": e.kid.hex(), "public": raw_public(e.key.public_key()).hex(),
             "valid_from": e.valid_from, "valid_until": e.valid_until,
             **({"endorsement": e.endorsement.hex()} if e.endorsement else {}),
             **({"revoked": e.revoked} if e.revoked is not None else {})}
            for e in self.entries
            if e.revoked is not None or e.valid_until is None or now < e.valid_until
        ]
