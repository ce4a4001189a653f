"""Gateway keys: 0600 files, kid = hash of the public key, rotation with an overlap."""

import stat

import pytest
from cryptography.exceptions import InvalidSignature

from metrotrace.gateway.envelope import key_id, raw_public
from metrotrace.gateway.errors import KeyFileError
from metrotrace.gateway.keys import ENDORSE, KeyRing

HOUR = 3_600_000


def test_keygen_writes_a_0600_key_whose_kid_is_its_public_key_hash(tmp_path):
    ring = KeyRing.create(tmp_path / "keys", 1000)
    (pem,) = (tmp_path / "keys").glob("gw-*.pem")
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    entry = ring.signing(1000)
    assert entry.kid == key_id(entry.key.public_key()) and len(entry.kid) == 16
    assert pem.name == f"gw-{entry.kid.hex()}.pem"
    assert KeyRing.load(tmp_path / "keys").signing(1000).kid == entry.kid
    with pytest.raises(KeyFileError, match="already"):
        KeyRing.create(tmp_path / "keys", 2000)


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    KeyRing.create(tmp_path / "keys", 1000)
    (pem,) = (tmp_path / "keys").glob("gw-*.pem")
    pem.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        KeyRing.load(tmp_path / "keys")


def test_rotation_signs_with_the_new_key_and_keeps_the_old_valid_for_the_overlap(tmp_path):
    ring = KeyRing.create(tmp_path / "keys", 0)
    old = ring.signing(10 * HOUR)
    new = ring.rotate(10 * HOUR, 24 * HOUR)
    ring = KeyRing.load(tmp_path / "keys")
    assert ring.signing(10 * HOUR).kid == new.kid
    announced = {k["kid"] for k in ring.announce(20 * HOUR)}
    assert announced == {old.kid.hex(), new.kid.hex()}  # both valid in the overlap
    assert {k["kid"] for k in ring.announce(34 * HOUR)} == {new.kid.hex()}
    # the old key endorses the new one
    message = ENDORSE + raw_public(new.key.public_key()) + (10 * HOUR).to_bytes(8, "big")
    old.key.public_key().verify(new.endorsement, message)
    with pytest.raises(InvalidSignature):
        old.key.public_key().verify(new.endorsement, message + b"x")


def test_revoking_the_signing_key_replaces_it_and_announces_the_revocation(tmp_path):
    ring = KeyRing.create(tmp_path / "keys", 0)
    old = ring.signing(HOUR)
    new = ring.revoke(old.kid, 2 * HOUR)
    ring = KeyRing.load(tmp_path / "keys")  # kept on disk
    assert new is not None and new.endorsement is None  # a revoked key endorses nothing
    assert ring.signing(2 * HOUR).kid == new.kid and ring.revoked() == {old.kid}
    announced = {k["kid"]: k for k in ring.announce(100 * HOUR)}
    assert announced[old.kid.hex()]["revoked"] == 2 * HOUR
    with pytest.raises(KeyFileError, match="no key"):
        ring.revoke(b"\x00" * 16, 3 * HOUR)


def test_a_batch_sealed_by_a_revoked_key_is_sealed_again_by_the_new_one(tmp_path):
    from metrotrace.gateway.batcher import Batcher
    from metrotrace.gateway.envelope import open_envelope
    from metrotrace.gateway.pending import Pending

    ring = KeyRing.create(tmp_path / "keys", 0)
    batcher = Batcher("gw", "metrotrace/v1/gw/gw/up", ring, 10, 0, 10**9)
    rows = Pending([b"\xa0"], [b"t" * 32], [HOUR], [1], [HOUR])
    sealed = batcher.seal(rows, 7, HOUR).envelope
    assert not batcher.sealed_by_revoked(sealed)
    old = ring.signing(HOUR)
    new = ring.revoke(old.kid, 2 * HOUR)
    assert batcher.sealed_by_revoked(sealed)
    again = batcher.reseal(sealed, 3 * HOUR)
    keys = {new.kid: new.key.public_key()}
    opened = open_envelope(again, "metrotrace/v1/gw/gw/up", keys.get)
    assert opened.kid == new.kid and opened.batch.seq == 7
    assert opened.batch.records == ((b"\xa0", b"t" * 32),)
