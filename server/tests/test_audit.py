"""`metrotrace verify`: finds any byte that changed, in the database or in an archive, and a
swapped gateway key when given keys obtained independently (--trusted-keys)."""

import hashlib
import json
import random
import subprocess
import sys

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metrotrace.gateway import envelope
from metrotrace.server.audit import trust, verify
from metrotrace.server.audit.archive import write_archive
from metrotrace.server.ingest.columns import decode
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.ingest.synth import T0, Site
from metrotrace.server.registry.keys import REVOCATION_GRACE_MS
from metrotrace.server.store import open_store
from metrotrace.server.store.rows import EnvelopeRow, GatewayKeyRow

NOW = T0 + 10**9


def fill(store, site, batches, per_batch):
    ingest = Ingest(store)
    for data in site.stream(batches, per_batch):
        assert ingest.handle(site.topic, data, NOW).status == "stored"


def test_a_clean_store_verifies(loaded, site):
    fill(loaded, site, 5, 20)
    report = verify.verify_store(loaded)
    assert report.ok and report.summary() == {"ok": True, "envelopes": 5, "records": 100,
                                              "stored_rows": 100, "problems": 0,
                                              "warnings": 0, "gateway_keys": "source",
                                              "node_keys": "source"}


def _sql(store, sql, *args):
    with store._tx() as cur:
        cur.execute(store._q(sql), args)


def test_changed_column_changed_record_and_changed_envelope_are_found(loaded, site):
    fill(loaded, site, 3, 10)
    node = site.node_ids[1]
    # t: a stored column (the others are decoded from the bytes when read)
    _sql(loaded, "UPDATE records SET t = t + 5 WHERE node = ? AND seq = 2", node)
    (row,) = [r for r, _ in loaded.stored_records() if r.node == node and r.seq == 3]
    forged = row.record.replace(b"\x0c\x61\x67", b"\x0c\x61\x67")  # same unit: bytes equal
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    _sql(loaded, "UPDATE records SET record = ? WHERE node = ? AND seq = 3", forged, node)
    _sql(loaded, "UPDATE envelopes SET data = ? WHERE id = 2",
         next(e for e in loaded.envelopes() if e.id == 2).data[:-1] + b"\x00")
    report = verify.verify_store(loaded)
    reasons = sorted((p["reason"], p.get("seq")) for p in report.problems)
    assert ("bad_signature", None) in reasons
    assert ("columns_differ_from_bytes", 2) in reasons
    assert ("bad_tag", 3) in reasons
    # records of the damaged envelope no longer sit in a verified envelope
    assert sum(r == "not_in_a_verified_envelope" for r, _ in reasons) == 10


@pytest.mark.slow
def test_verify_finds_one_flipped_byte_in_a_100000_record_archive(tmp_path):
    site = Site(nodes=16)
    store = open_store(f"sqlite:///{tmp_path / 'big.sqlite3'}")
    for row in site.registry_rows():
        store.put(row)
    fill(store, site, 200, 500)
    assert store.count("records") == 100_000
    archive = tmp_path / "archive.cbor"
    assert write_archive(store, archive) == 200
    store.close()
    clean = verify.verify_archive(archive)
    assert clean.ok and clean.records == 100_000

    data = bytearray(archive.read_bytes())
    rng = random.Random(5)
    target = rng.randrange(len(data) // 2, len(data))
    data[target] ^= 1 << rng.randrange(8)
    damaged = tmp_path / "damaged.cbor"
    damaged.write_bytes(bytes(data))
    cli = subprocess.run([sys.executable, "-m", "metrotrace.tools.cli", "verify", "--archive",
                          str(damaged)], capture_output=True, text=True)
    assert cli.returncode == 1, cli.stderr
    assert '"ok": false' in cli.stdout.splitlines()[-1]
    report = verify.verify_archive(damaged)
    # the damage itself; a damaged envelope also leaves its records' successors without
    # their predecessors (at most one chain gap per node)
    damage = [p for p in report.problems if p["reason"] != "chain_gap"]
    assert len(damage) == 1 and report.records >= 99_000
    assert len(report.problems) - 1 <= site.nodes


def test_flipped_byte_inside_a_record_names_its_envelope(loaded, site, tmp_path):
    fill(loaded, site, 4, 25)
    archive = tmp_path / "a.cbor"
    write_archive(loaded, archive)
    data = bytearray(archive.read_bytes())
    row = next(r for r, e in loaded.stored_records() if e == 3)
    at = data.index(row.record)
    data[at + len(row.record) - 2] ^= 0x10  # a value byte of one record, deep in envelope 3
    archive.write_bytes(bytes(data))
    report = verify.verify_archive(archive)
    assert [(p["envelope_id"], p["reason"]) for p in report.problems] == [(3, "bad_signature")]


def test_cli_verify_and_export_archive_on_a_data_dir(tmp_path, site):
    store = open_store(f"sqlite:///{tmp_path / 'metrotrace.sqlite3'}")
    for row in site.registry_rows():
        store.put(row)
    fill(store, site, 3, 10)
    store.close()
    cli = [sys.executable, "-m", "metrotrace.tools.cli"]
    ok = subprocess.run([*cli, "verify", "--data-dir", str(tmp_path)], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and '"stored_rows": 30' in ok.stdout, ok.stderr
    archive = tmp_path / "out.cbor"
    done = subprocess.run([*cli, "export-archive", "--data-dir", str(tmp_path), str(archive)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "wrote 3 envelopes" in done.stdout
    again = subprocess.run([*cli, "verify", "--archive", str(archive)], capture_output=True,
                           text=True)
    assert again.returncode == 0 and '"records": 30' in again.stdout
    conf = subprocess.run([*cli, "broker", "config", "--data-dir", str(tmp_path), "--out",
                           str(tmp_path / "broker")], capture_output=True, text=True)
    assert conf.returncode == 0, conf.stderr
    assert "pattern write metrotrace/v1/gw/%u/up" in (tmp_path / "broker" / "acl").read_text()
    assert (tmp_path / "broker" / "passwd").read_text().startswith(f"{site.gateway}:$7$101$")


def registry_file(site, path):
    """The genuine registry as a JSON registry file: what an auditor keeps apart."""
    public = envelope.raw_public(site.key.public_key()).hex()
    path.write_text(json.dumps({
        "site": [{"id": site.site, "name": site.site}],
        "gateway": [{"id": site.gateway, "site": site.site,
                     "key": [{"public_key": public, "valid_from": site.valid_from}]}],
        "node": [{"id": n.hex(), "gateway": site.gateway, "key": site.node_keys[n].hex()}
                 for n in site.node_ids]}))
    return path


def test_a_forger_who_swaps_the_key_and_resigns_everything_is_caught_with_trusted_keys(
        store, site, store_url, tmp_path):
    # Same gateway, nodes and node keys as `site`, but the forger's own gateway key: the
    # database is consistent with itself, every signature verifies with the keys it holds.
    forger = Site(nodes=site.nodes, key=Ed25519PrivateKey.from_private_bytes(b"\7" * 32))
    for row in forger.registry_rows():
        store.put(row)
    fill(store, forger, 3, 10)
    blind = verify.verify_store(store)
    assert blind.ok and blind.trust == {"gateway_keys": "source", "node_keys": "source"}

    trusted_path = registry_file(site, tmp_path / "registry.json")
    report = verify.verify_store(store, trust.load(trusted_path))
    assert [p["reason"] for p in report.problems if "envelope_id" in p
            and "node" not in p] == ["unknown_key"] * 3
    assert report.warnings == [{"reason": "key_not_trusted", "gateway": site.gateway,
                                "kid": envelope.key_id(forger.key.public_key()).hex()}]
    assert report.summary()["gateway_keys"] == str(trusted_path)
    write_archive(store, tmp_path / "forged.cbor")
    archived = verify.verify_archive(tmp_path / "forged.cbor", trust.load(trusted_path))
    assert [p["reason"] for p in archived.problems] == ["unknown_key"] * 3

    cli = [sys.executable, "-m", "metrotrace.tools.cli", "verify", "--db", store_url]
    fooled = subprocess.run(cli, capture_output=True, text=True)
    assert fooled.returncode == 0  # all a check against the source itself can say ...
    assert "read from the verified database itself" in fooled.stderr  # ... and it says so
    caught = subprocess.run([*cli, "--trusted-keys", str(trusted_path)], capture_output=True,
                            text=True)
    assert caught.returncode == 1 and '"reason": "unknown_key"' in caught.stdout
    assert "gateway keys were read" not in caught.stderr


def _seal_under(batch, key, kid, topic):
    """A COSE_Sign1 signed by `key` but naming another key's `kid` (a forger's envelope)."""
    protected = cbor2.dumps({1: envelope.ALG_ED25519, 4: kid})
    payload = envelope.encode_batch(batch)
    signature = key.sign(cbor2.dumps(["Signature1", protected, topic.encode(), payload]))
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


def test_a_public_key_swapped_under_its_old_kid_is_found_without_trusted_keys(store, site):
    forger = Ed25519PrivateKey.from_private_bytes(b"\7" * 32)
    kid = envelope.key_id(site.key.public_key())
    for row in site.registry_rows():
        store.put(row)
    store.put(GatewayKeyRow(kid, site.gateway, envelope.raw_public(forger.public_key()),
                            site.valid_from))
    records = [site.weighing(0, T0 + i, 100 + i) for i in range(3)]
    data = _seal_under(envelope.Batch(site.gateway, 1, T0, tuple(records)), forger, kid,
                       site.topic)
    store.store_batch(EnvelopeRow(hashlib.sha256(data).digest(), site.gateway, kid, 1, T0,
                                  NOW, site.topic, False, 3, data),
                      [decode(r, t) for r, t in records])
    report = verify.verify_store(store)
    reasons = [p["reason"] for p in report.problems]
    assert reasons[:2] == ["kid_mismatch", "unknown_key"]
    assert report.problems[0]["public_key_hashes_to"] == \
        envelope.key_id(forger.public_key()).hex()
    # ingest will not take the forger's envelopes under that row either
    assert Ingest(store).handle(site.topic, data, NOW).reason == "unknown_key"


def test_keygen_output_and_a_node_key_file_serve_as_trusted_keys(loaded, site, tmp_path,
                                                                 store_url):
    fill(loaded, site, 2, 8)
    keygen = tmp_path / "keygen.json"  # what `metrotrace gateway keygen` printed
    kid = envelope.key_id(site.key.public_key()).hex()
    keygen.write_text(json.dumps({"kid": kid, "keys": [
        {"kid": kid, "public": envelope.raw_public(site.key.public_key()).hex(),
         "valid_from": site.valid_from, "valid_until": None}]}))
    node_keys = tmp_path / "node_keys.json"  # the gateway's node key file
    node_keys.write_text(json.dumps({"nodes": {n.hex(): {"key": k.hex()}
                                               for n, k in site.node_keys.items()}}))
    node = site.node_ids[0]
    _sql(loaded, "UPDATE nodes SET key = ? WHERE id = ?", b"\0" * 32, node)  # tampered
    from_source = verify.verify_store(loaded)
    assert {p["reason"] for p in from_source.problems} == {"bad_tag"}
    report = verify.verify_store(loaded, trust.load(keygen, node_keys))
    assert report.ok and report.trust == {"gateway_keys": str(keygen),
                                          "node_keys": str(node_keys)}
    assert report.warnings == [{"reason": "node_key_differs_from_trusted",
                                "node": node.hex()}]
    other = tmp_path / "other-gateway.json"  # one keygen output per gateway: repeatable
    other.write_text(json.dumps({"keys": [{"public": "11" * 32, "valid_from": 0}]}))
    cli = subprocess.run([sys.executable, "-m", "metrotrace.tools.cli", "verify", "--db",
                          store_url, "--trusted-keys", str(keygen), "--trusted-keys",
                          str(other), "--node-keys", str(node_keys)], capture_output=True,
                         text=True)
    assert cli.returncode == 0 and cli.stderr == "", cli.stderr
    assert json.loads(cli.stdout.splitlines()[-1])["gateway_keys"] == f"{keygen}, {other}"
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [{"public": "zz"}]}')
    with pytest.raises(trust.TrustError, match=r"keys\[0\]\.public"):
        trust.load(bad)


def test_an_envelope_received_after_its_keys_revocation_and_grace_is_a_problem(loaded, site):
    fill(loaded, site, 2, 4)  # created about T0, received at NOW
    (key,) = loaded.registry()["keys"]
    revoked = NOW - REVOCATION_GRACE_MS  # after every created, grace over at NOW
    loaded.put(GatewayKeyRow(key.kid, key.gateway, key.public_key, key.valid_from, revoked))
    problems = verify.verify_store(loaded).problems
    assert [(p["reason"], p["received"], p["revoked_at"]) for p in problems] == [
        ("received_after_revocation", NOW, revoked)] * 2
    loaded.put(GatewayKeyRow(key.kid, key.gateway, key.public_key, key.valid_from, revoked + 1))
    assert verify.verify_store(loaded).ok  # received within the grace: accepted then, fine now
