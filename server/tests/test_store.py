"""The Store contract, run against SQLite and PostgreSQL alike."""

import fcntl
import hashlib
import threading
import time

from metrotrace.server.ingest.columns import decode
from metrotrace.server.store import AlertRow, EnvelopeRow, RejectRow, open_store, schema
from metrotrace.server.store.rows import GatewayKeyRow, InstrumentRow


def envelope_row(data: bytes, n: int) -> EnvelopeRow:
    return EnvelopeRow(hashlib.sha256(data).digest(), "market-1", b"k" * 16, 1, 1000, 2000,
                       "metrotrace/v1/gw/market-1/up", False, n, data)


def rows(site, count, start_t=1000):
    return [decode(*site.weighing(i % site.nodes, start_t + i, 500 + i)) for i in range(count)]


def test_migrations_bring_a_new_store_to_the_latest_version_and_are_idempotent(store_url):
    first = open_store(store_url)
    assert first.schema_version() == schema.LATEST
    first.close()
    again = open_store(store_url)  # a second open applies nothing and fails on nothing
    assert again.schema_version() == schema.LATEST
    assert again.count("records") == 0
    again.close()


def test_batch_is_stored_with_its_envelope_verbatim(store, site):
    batch = rows(site, 10)
    result = store.store_batch(envelope_row(b"envelope-1", 10), batch)
    assert result.inserted == 10 and result.duplicates == 0 and not result.forgeries
    (env,) = list(store.envelopes())
    assert env.data == b"envelope-1" and env.id == result.envelope_id
    stored = {(r.node, r.seq): r for r, envelope_id in store.stored_records()
              if envelope_id == result.envelope_id}
    assert stored == {(r.node, r.seq): r for r in batch}


def test_same_envelope_twice_is_a_replay_and_stores_nothing(store, site):
    batch = rows(site, 5)
    assert store.store_batch(envelope_row(b"e", 5), batch).envelope_id is not None
    again = store.store_batch(envelope_row(b"e", 5), batch)
    assert again.envelope_id is None
    assert store.count("envelopes") == 1 and store.count("records") == 5


def test_resent_records_are_duplicates_and_changed_ones_are_forgeries(store, site):
    batch = rows(site, 6)
    store.store_batch(envelope_row(b"first", 6), batch)
    forged = batch[2]._replace(value=999_999, record=batch[2].record + b"\x00")
    result = store.store_batch(envelope_row(b"second", 3), [batch[0], batch[1], forged])
    assert result.inserted == 0 and result.duplicates == 2
    assert result.forgeries == ((forged.node, forged.seq),)
    kept = store.records(node=forged.node, limit=100)
    assert batch[2] in kept and forged not in kept  # the first bytes stay
    assert store.count("records") == 6 and store.count("envelopes") == 2


def test_new_and_old_records_in_one_batch(store, site):
    batch = rows(site, 4)
    store.store_batch(envelope_row(b"a", 2), batch[:2])
    result = store.store_batch(envelope_row(b"b", 4), batch)
    assert (result.inserted, result.duplicates, result.forgeries) == (2, 2, ())


def test_records_by_instrument_and_time_range(store, site):
    store.store_batch(envelope_row(b"a", 30), rows(site, 30, start_t=10_000))
    inst = site.instrument(1)
    got = store.records(instrument=inst, t0=10_005, t1=10_020)
    assert [r.t for r in got] == [t for t in range(10_005, 10_020) if (t - 10_000) % 3 == 1]
    assert all(r.inst == inst and r.kind == 1 and r.unit == "g" for r in got)
    assert store.records(instrument=inst, kinds=[3]) == []


def test_registry_rows_round_trip_and_update(store, site):
    for row in site.registry_rows():
        store.put(row)
    reg = store.registry()
    assert {r.id for r in reg["nodes"]} == set(site.node_ids)
    key = reg["keys"][0]
    store.put(GatewayKeyRow(key.kid, key.gateway, key.public_key, key.valid_from, 5_000))
    assert store.registry()["keys"][0].revoked_at == 5_000
    inst = reg["instruments"][0]
    store.put(InstrumentRow(**{**inst.__dict__, "status": "suspended"}))
    assert store.registry()["instruments"][0].status == "suspended"


def test_alerts_and_rejects_are_kept_and_filtered(store):
    alert_id = store.add_alert(AlertRow(10, "market", "forgery", {"seq": 3}, node=b"\x01"))
    store.add_alert(AlertRow(20, "station", "forgery", {}))
    (alert,) = store.alerts(site="market")
    assert alert.id == alert_id and alert.detail == {"seq": 3} and alert.node == b"\x01"
    store.add_reject(RejectRow(30, "bad_tag", "tag: does not match", data=b"\xff"))
    store.add_reject(RejectRow(40, "replay", "again"))
    assert [r.reason for r in store.rejects()] == ["bad_tag", "replay"]
    assert [r.data for r in store.rejects(reason="bad_tag")] == [b"\xff"]
    assert [r.reason for r in store.rejects(since=35)] == ["replay"]


def test_record_kinds_keep_their_fields(store, site):
    check = decode(*site.check(0, 5000, 10_005, 10_000))
    store.store_batch(envelope_row(b"c", 1), [check])
    (got,) = store.records(kinds=[3])
    assert (got.value, got.reference, got.e) == (10_005, 10_000, 5)
    assert got.extra == '{"ref_id": "TW-10kg"}'


def test_several_envelopes_in_one_transaction_all_or_nothing(store, site):
    batch = rows(site, 6)
    forged = batch[1]._replace(record=batch[1].record + b"\x00")
    results = store.store_batches([(envelope_row(b"g1", 3), batch[:3]),
                                   (envelope_row(b"g2", 4), batch[2:4] + [forged]),
                                   (envelope_row(b"g1", 3), batch[:3])])
    assert [r.inserted for r in results[:2]] == [3, 1] and results[2].envelope_id is None
    assert results[1].duplicates == 1 and results[1].forgeries == ((forged.node, forged.seq),)
    broken = EnvelopeRow(b"d" * 32, None, b"k" * 16, 1, 1, 1, "t", False, 0, b"g3")  # no gateway
    try:
        store.store_batches([(envelope_row(b"g4", 2), batch[4:]), (broken, [])])
    except Exception as e:  # the backend's integrity error
        assert "null" in str(e).lower()
    else:
        raise AssertionError("an envelope without columns was stored")
    assert store.count("envelopes") == 2 and store.count("records") == 4  # g4 rolled back


def _old_store(store_url, version):
    """A database that an older metrotrace made: migrations up to `version` only."""
    if store_url.startswith("sqlite:///"):
        import sqlite3

        conn, dialect, mark = sqlite3.connect(store_url[len("sqlite:///"):]), "sqlite", "?"
    else:
        import psycopg

        conn, dialect, mark = psycopg.connect(store_url), "postgres", "%s"
    conn.execute("CREATE TABLE schema_version "
                 "(version INTEGER PRIMARY KEY, description TEXT NOT NULL)")
    for v in range(1, version + 1):
        for statement in schema.statements(dialect, v):
            conn.execute(statement)
        conn.execute(f"INSERT INTO schema_version VALUES ({mark}, 'old')", (v,))
    return conn, mark


def test_a_version_2_store_keeps_its_records_through_the_column_migration(store_url, site):
    """Version 3 drops the decoded columns: rows stored with them read back the same."""
    batch = [*rows(site, 3), decode(*site.check(0, 5000, 10_005, 10_000))]
    e = envelope_row(b"old", len(batch))
    conn, mark = _old_store(store_url, 2)
    try:
        conn.execute(f"INSERT INTO envelopes (digest, gateway, kid, batch_seq, created, "
                     f"received, topic, backfill, n_records, data) "
                     f"VALUES ({', '.join([mark] * 10)})",
                     (e.digest, e.gateway, e.kid, e.batch_seq, e.created, e.received, e.topic,
                      0, e.n_records, e.data))
        for r in batch:
            conn.execute(f"INSERT INTO records ({', '.join(r._fields)}, envelope_id) "
                         f"VALUES ({', '.join([mark] * 19)}, 1)", tuple(r))
        conn.commit()
    finally:
        conn.close()
    store = open_store(store_url)
    try:
        assert store.schema_version() == schema.LATEST >= 3
        assert sorted(store.records(), key=lambda r: (r.t, r.node, r.seq)) == \
            sorted(batch, key=lambda r: (r.t, r.node, r.seq))
        assert sorted(r for r, _ in store.stored_records()) == sorted(batch)
    finally:
        store.close()


def test_a_record_whose_bytes_no_longer_decode_is_still_read(store, site):
    """Stored bytes changed behind the store's back: the row is read with its stored
    columns and the decoded ones empty, so `metrotrace verify` can report it."""
    batch = rows(site, 2)
    store.store_batch(envelope_row(b"e", 2), batch)
    with store._tx() as cur:
        cur.execute(store._q("UPDATE records SET record = ? WHERE seq = 1 AND node = ?"),
                    (b"\xff", batch[0].node))
    got = {r.seq: r for r in store.records(node=batch[0].node)}[1]
    assert (got.node, got.seq, got.kind, got.t, got.inst) == batch[0][:4] + (batch[0].inst,)
    assert got.record == b"\xff" and got.tag == batch[0].tag
    assert got.prev is None and got.value is None and got.unit is None


def test_sqlite_a_group_that_finds_the_write_lock_held_stages_and_stores_the_same(tmp_path,
                                                                                    site):
    # Another worker on the file holds the write lock: the group binds its records into
    # its TEMP table meanwhile, then copies them in; the outcome must be what binding
    # them straight in gives (first copy of a repeated key kept, duplicates, forgeries,
    # each envelope's records under its own envelope id), and the lock is let go.
    store = open_store(f"sqlite:///{tmp_path / 'staged.sqlite3'}")
    try:
        first = rows(site, 6)
        store.store_batch(envelope_row(b"first", 6), first)
        assert store.staged_groups == 0  # the lock was free: nothing staged
        forged = first[2]._replace(value=999_999, record=first[2].record + b"\x00")
        new = rows(site, 5, start_t=5000)
        batches = [(envelope_row(b"second", 6), [first[0], forged, new[0], new[0], new[1],
                                                 first[1]]),
                   (envelope_row(b"third", 3), new[2:])]
        other = open(f"{store.path}-writelock", "a")  # noqa: SIM115 (closed below)
        fcntl.flock(other, fcntl.LOCK_EX)
        release = threading.Timer(0.3, fcntl.flock, (other, fcntl.LOCK_UN))
        release.start()
        began = time.monotonic()
        second, third = store.store_batches(batches)
        assert time.monotonic() - began >= 0.25  # it did wait for the lock
        release.join()
        assert store.staged_groups == 1
        assert (second.inserted, second.duplicates, second.forgeries) == (
            2, 3, ((forged.node, forged.seq),))
        assert (third.inserted, third.duplicates, third.forgeries) == (3, 0, ())
        by_key = {(r.node, r.seq): (r, envelope_id) for r, envelope_id in store.stored_records()}
        assert by_key[(forged.node, forged.seq)][0] == first[2]  # the first bytes stay
        assert [by_key[(r.node, r.seq)][1] for r in new] == [second.envelope_id] * 2 + [
            third.envelope_id] * 3
        assert all(by_key[(r.node, r.seq)][0] == r for r in new)
        assert store.count("records") == 11
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free for others
        fcntl.flock(other, fcntl.LOCK_UN)
        other.close()
        assert store.store_batch(envelope_row(b"fourth", 1), rows(site, 1, 9000)).inserted == 1
        assert store.staged_groups == 1  # free again: straight in
    finally:
        store.close()
