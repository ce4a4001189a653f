"""`metrotrace verify`: finds any byte that changed, in the database or in an archive."""

import random
import subprocess
import sys

import pytest

from metrotrace.server.audit import verify
from metrotrace.server.audit.archive import write_archive
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.ingest.synth import T0, Site
from metrotrace.server.store import open_store

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
                                              "warnings": 0}


def _sql(store, sql, *args):
    with store._tx() as cur:
        cur.execute(store._q(sql), args)


def test_changed_column_changed_record_and_changed_envelope_are_found(loaded, site):
    fill(loaded, site, 3, 10)
    node = site.node_ids[1]
    _sql(loaded, "UPDATE records SET value = value + 5 WHERE node = ? AND seq = 2", node)
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
