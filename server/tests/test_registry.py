"""Registry files load whole or not at all; errors name the entry and field."""

import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metrotrace.gateway import envelope
from metrotrace.server.registry import RegistryError
from metrotrace.server.registry.load import parse, read_file
from metrotrace.server.store import open_store

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
