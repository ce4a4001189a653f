"""Registry files load whole or not at all; errors name the entry and field. Key validity
(revocation by created and by receive time), and the version counter workers follow."""

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metrotrace.gateway import envelope
from metrotrace.server.registry import RegistryError
from metrotrace.server.registry.keys import REVOCATION_GRACE_MS, KeyRing, kid_of
from metrotrace.server.registry.load import parse, read_file
from metrotrace.server.registry.watch import RegistryWatch
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import GatewayKeyRow

PUBLIC = envelope.raw_public(Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key())

TOML = f"""
[[site]]
id = "market"
name = "Central market"

[[gateway]]
id = "market-1"
site = "market"
  [[gateway.key]]
  public_key = "{PUBLIC.hex()}"
  valid_from = 2025-01-01T00:00:00Z
  revoked_at = "2026-01-01"

[[node]]
id = "e6614103e7513a2f"
gateway = "market-1"
key = "{bytes(range(32)).hex()}"

[[instrument]]
id = "NAWI-0042"
site = "market"
node = "e6614103e7513a2f"
type = "NAWI"
accuracy_class = "III"
max = 15000
min = 100
e = 5
unit = "g"
verified_on = 2025-03-01
verification_due = 2026-03-01
"""


def test_toml_file_loads_into_rows(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text(TOML)
    rows = read_file(path)
    key = next(r for r in rows if type(r).__name__ == "GatewayKeyRow")
    assert key.kid == envelope.key_id(
        Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key())
    assert (key.valid_from, key.revoked_at) == (1735689600000, 1767225600000)
    inst = next(r for r in rows if type(r).__name__ == "InstrumentRow")
    assert (inst.max, inst.e, inst.status, inst.verified_on) == (15000, 5, "in_service",
                                                                 1740787200000)


@pytest.mark.parametrize(("entry", "message"), [
    ({"instrument": [{"id": "x", "site": "s", "type": "NAWI", "accuracy_class": "III",
                      "max": 1.5, "min": 0, "e": 1, "unit": "g"}]},
     "instrument[0].max: expected an integer in base units"),
    ({"node": [{"id": "zz", "key": "00" * 32}]}, "node[0].id: expected hex"),
    ({"node": [{"id": "01", "key": "00" * 8}]}, "node[0].key: expected 32 bytes"),
    ({"gateway": [{"id": "g", "site": "s", "key": [{"public_key": PUBLIC.hex()}]}]},
     "gateway[0].key[0].valid_from: missing"),
    ({"scales": []}, "unknown section"),
])
def test_bad_entries_name_the_field(entry, message):
    with pytest.raises(RegistryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(entry)


def test_cli_loads_a_registry_file_into_the_store(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text(TOML)
    cli = [sys.executable, "-m", "metrotrace.tools.cli"]
    done = subprocess.run([*cli, "registry", "load", "--data-dir", str(tmp_path), str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    store = open_store(f"sqlite:///{tmp_path / 'metrotrace.sqlite3'}")
    assert [i.id for i in store.registry()["instruments"]] == ["NAWI-0042"]
    store.close()
    shown = subprocess.run([*cli, "registry", "show", "--data-dir", str(tmp_path)],
                           capture_output=True, text=True)
    assert '"market-1"' in shown.stdout and '"key"' not in shown.stdout  # no node secrets


def _key_row(revoked_at=None, public=PUBLIC):
    return GatewayKeyRow(envelope.key_id(Ed25519PrivateKey.from_private_bytes(
        bytes(32)).public_key()), "market-1", public, 1000, revoked_at)


def test_revocation_judges_the_receive_time_as_well_as_the_claimed_created_time():
    key = KeyRing({"keys": [_key_row(revoked_at=10_000)]}).keys[_key_row().kid]
    assert key.refuses("market-1", 9_999, 9_999) is None
    assert key.refuses("market-1", 10_000, 10_000) == "revoked_key"  # created after
    # sealed before the revocation, arriving within the grace: accepted
    assert key.refuses("market-1", 9_000, 10_000 + REVOCATION_GRACE_MS - 1) is None
    # the same claim arriving later is a backdated signature by a revoked key
    assert key.refuses("market-1", 9_000, 10_000 + REVOCATION_GRACE_MS) == "revoked_key"
    assert key.refuses("market-1", 999, 5_000) == "key_not_yet_valid"
    assert key.refuses("market-2", 5_000, 5_000) == "gateway_mismatch"


def test_a_key_is_found_only_under_the_kid_its_public_key_hashes_to():
    other = envelope.raw_public(Ed25519PrivateKey.from_private_bytes(b"\1" * 32).public_key())
    ring = KeyRing({"keys": [_key_row(public=other)]})  # public key swapped under old kid
    assert ring.public_key(_key_row().kid) is None
    assert ring.public_key(kid_of(other)) is not None


def test_the_registry_version_moves_with_every_registry_write(store):
    watch = RegistryWatch(store, every_ms=100)
    assert not watch.changed(0)
    for row in parse({"site": [{"id": "market", "name": "m"}]}):
        store.put(row)
    assert not watch.changed(50)  # checked at most every 100 ms
    assert watch.changed(100) and not watch.changed(200)
    store.put(_key_row(revoked_at=5))
    assert watch.changed(300) and watch.version == 2
