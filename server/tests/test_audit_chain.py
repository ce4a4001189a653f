"""`metrotrace verify` finds deleted records (node chains) and batch holes, in the store
and in an archive, on both backends."""

import hmac
import subprocess
import sys

from metrotrace.firmware.metro.wire import record
from metrotrace.server.audit import verify
from metrotrace.server.audit.archive import write_archive
from metrotrace.server.ingest.core import Ingest
from metrotrace.server.ingest.synth import T0

NOW = T0 + 10**9


def fill(store, site, batches, per_batch):
    ingest = Ingest(store)
    for data in site.stream(batches, per_batch):
        assert ingest.handle(site.topic, data, NOW).status == "stored"


def _sql(store, sql, *args):
    with store._tx() as cur:
        cur.execute(store._q(sql), args)


def _reasons(report):
    return sorted(p["reason"] for p in report.problems)


def test_an_intact_store_and_its_archive_pass(loaded, site, tmp_path):
    fill(loaded, site, 4, 12)
    assert verify.verify_store(loaded).ok
    write_archive(loaded, tmp_path / "a.cbor")
    report = verify.verify_archive(tmp_path / "a.cbor")
    assert report.ok and not report.warnings and report.records == 48


def test_a_deleted_record_row_is_a_chain_gap_and_missing_from_store(loaded, site, store_url):
    fill(loaded, site, 3, 12)
    node = site.node_ids[1]
    _sql(loaded, "DELETE FROM records WHERE node = ? AND seq = 5", node)
    report = verify.verify_store(loaded)
    assert not report.ok
    assert {"reason": "chain_gap", "node": node.hex(), "missing_seq": 5,
            "named_by_seq": 6} in report.problems
    assert _reasons(report) == ["chain_gap", "missing_from_store"]
    # the command line says so too, and fails
    cli = subprocess.run([sys.executable, "-m", "metrotrace.tools.cli", "verify", "--db",
                          store_url], capture_output=True, text=True)
    assert cli.returncode == 1, cli.stderr
    assert '"missing_seq": 5' in cli.stdout


def test_a_deleted_first_or_last_record_is_found_through_its_envelope(loaded, site):
    fill(loaded, site, 2, 9)
    node = site.node_ids[0]
    _sql(loaded, "DELETE FROM records WHERE node = ? AND seq IN (1, 6)", node)  # ends
    report = verify.verify_store(loaded)
    missing = sorted(p["seq"] for p in report.problems if p["reason"] == "missing_from_store")
    assert missing == [1, 6] and _reasons(report) == ["missing_from_store"] * 2


def test_a_deleted_envelope_with_its_records_is_found(loaded, site, tmp_path):
    fill(loaded, site, 4, 6)  # 2 records per node per batch
    _sql(loaded, "DELETE FROM records WHERE envelope_id = 2")
    _sql(loaded, "DELETE FROM envelopes WHERE id = 2")
    report = verify.verify_store(loaded)
    gaps = sorted((p["node"], p["missing_seq"], p["named_by_seq"]) for p in report.problems)
    assert gaps == sorted((n.hex(), 4, 5) for n in site.node_ids)
    assert report.warnings == [{"reason": "batch_seq_gap", "gateway": site.gateway,
                                "missing_from": 2, "missing_to": 2}]
    write_archive(loaded, tmp_path / "a.cbor")
    archived = verify.verify_archive(tmp_path / "a.cbor")
    assert sorted((p["node"], p["missing_seq"]) for p in archived.problems) == \
        sorted((n.hex(), 4) for n in site.node_ids)
    assert archived.warnings == report.warnings


def test_a_rebooted_node_and_a_gateway_joining_midway_pass(loaded, site, tmp_path):
    """A reboot skips to the next lease block (prev names the last record before it); a
    gateway that met the node late stores from its oldest unacknowledged record on."""
    node = site.node_ids[0]

    def make(seq, prev, t):
        data = record.make(record.WEIGHING, node, seq, prev, t, record.TQ_NTP,
                           inst=site.instrument(0), gross=1000, tare=0, net=1000, e=5,
                           unit="g", flags=0)
        return data, hmac.new(site.node_keys[node], data, "sha256").digest()

    chain = [(501, 500), (502, 501), (503, 502), (1024, 503), (1025, 1024)]  # reboot at 1024
    ingest = Ingest(loaded)
    data = site.seal([make(s, p, T0 + i) for i, (s, p) in enumerate(chain)], created=T0)
    assert ingest.handle(site.topic, data, NOW).status == "stored"
    report = verify.verify_store(loaded)
    assert report.ok, report.problems
    write_archive(loaded, tmp_path / "a.cbor")
    assert verify.verify_archive(tmp_path / "a.cbor").ok
    # and deleting the record before the reboot is a gap named by the first one after it
    _sql(loaded, "DELETE FROM records WHERE node = ? AND seq = 503", node)
    assert {"reason": "chain_gap", "node": node.hex(), "missing_seq": 503,
            "named_by_seq": 1024} in verify.verify_store(loaded).problems
