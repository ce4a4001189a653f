"""The ingest decision: every bad message rejected with its reason, good ones stored once."""

import cbor2
import hypothesis.strategies as st
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings

from metrotrace.gateway import envelope
from metrotrace.server.ingest.core import REJECTED, STORED, Ingest
from metrotrace.server.ingest.synth import T0, Site
from metrotrace.server.store.rows import GatewayKeyRow

NOW = T0 + 60_000
REASONS = {"bad_topic", "oversize", "malformed", "bad_alg", "unknown_key", "bad_signature",
           "gateway_mismatch", "key_not_yet_valid", "revoked_key", "future_batch", "replay"}


def weighings(site, n=5):
    return [site.weighing(i % site.nodes, T0 + i, 1000 + i) for i in range(n)]


def test_good_batch_is_stored_and_its_records_decoded(loaded, site):
    ingest = Ingest(loaded)
    outcome = ingest.handle(site.topic, site.seal(weighings(site, 6)), NOW)
    assert (outcome.status, outcome.inserted) == (STORED, 6)
    assert loaded.count("records") == 6 and loaded.count("rejects") == 0
    assert {r.value for r in loaded.records()} == set(range(1000, 1006))


def refused(store, ingest, topic, payload, reason):
    outcome = ingest.handle(topic, payload, NOW)
    assert (outcome.status, outcome.reason) == (REJECTED, reason), outcome
    (row,) = store.rejects(reason=reason)
    return row


def test_tampered_envelope_is_a_bad_signature(loaded, site):
    data = bytearray(site.seal(weighings(site)))
    data[-70] ^= 0x01  # inside the signed payload
    row = refused(loaded, Ingest(loaded), site.topic, bytes(data), "bad_signature")
    assert row.data == bytes(data) and row.gateway == site.gateway
    assert loaded.count("records") == 0


def test_envelope_moved_to_another_topic_is_a_bad_signature(loaded, site):
    refused(loaded, Ingest(loaded), "metrotrace/v1/gw/other/up", site.seal(weighings(site)),
            "bad_signature")


def test_tampered_node_record_is_a_bad_tag_and_the_rest_is_stored(loaded, site):
    records = weighings(site, 4)
    data, tag = records[1]
    records[1] = (data.replace(b"\x19\x03\xe9", b"\x19\x03\xea"), tag)  # net 1001 -> 1002
    outcome = Ingest(loaded).handle(site.topic, site.seal(records), NOW)
    assert outcome.status == STORED and outcome.inserted == 3
    assert [r.reason for r in outcome.record_rejects] == ["bad_tag"]
    (row,) = loaded.rejects(reason="bad_tag")
    assert row.data == records[1][0] + tag and row.seq == 1


def test_unknown_key_and_unknown_node(loaded, site):
    stranger = Ed25519PrivateKey.generate()
    refused(loaded, Ingest(loaded), site.topic, site.seal(weighings(site), key=stranger),
            "unknown_key")
    records = weighings(site, 2)
    loaded_nodes = site.node_ids
    site.node_ids = [b"\x99" * 8] + loaded_nodes[1:]
    site.node_keys[b"\x99" * 8] = b"k" * 32
    site.next_seq[b"\x99" * 8] = 1
    records.append(site.weighing(0, T0, 5))
    outcome = Ingest(loaded).handle(site.topic, site.seal(records), NOW)
    assert [r.reason for r in outcome.record_rejects] == ["unknown_node"]
    assert outcome.inserted == 2


def test_a_key_registered_just_after_an_unknown_one_is_found_at_once(loaded, site):
    ingest = Ingest(loaded)
    stranger = Ed25519PrivateKey.generate()
    refused(loaded, ingest, site.topic, site.seal(weighings(site), key=stranger),
            "unknown_key")
    # the registry has not changed: a second unknown key costs a counter read, no reload
    assert ingest.handle(site.topic, site.seal(weighings(site), key=stranger),
                         NOW).reason == "unknown_key"
    public = envelope.raw_public(stranger.public_key())
    loaded.put(GatewayKeyRow(envelope.key_id(stranger.public_key()), site.gateway, public,
                             T0, None))
    outcome = ingest.handle(site.topic, site.seal(weighings(site), key=stranger), NOW + 1)
    assert outcome.status == STORED, outcome


def test_revoked_key_refuses_batches_created_after_revocation_only(loaded, site):
    (key,) = loaded.registry()["keys"]
    loaded.put(GatewayKeyRow(key.kid, key.gateway, key.public_key, key.valid_from, T0 + 1000))
    ingest = Ingest(loaded)
    before = ingest.handle(site.topic, site.seal(weighings(site), created=T0 + 999), NOW)
    assert before.status == STORED
    refused(loaded, ingest, site.topic, site.seal(weighings(site), created=T0 + 1000),
            "revoked_key")


def test_rotation_new_key_valid_from_its_time_old_key_kept_for_history(loaded, site):
    new = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = envelope.raw_public(new.public_key())
    loaded.put(GatewayKeyRow(envelope.key_id(new.public_key()), site.gateway, public, T0 + 500))
    ingest = Ingest(loaded)
    early = site.seal(weighings(site), created=T0 + 100, key=new)
    refused(loaded, ingest, site.topic, early, "key_not_yet_valid")
    assert ingest.handle(site.topic, site.seal(weighings(site), created=T0 + 600, key=new),
                         NOW).status == STORED


def test_key_of_one_gateway_cannot_sign_for_another(loaded, site):
    other_topic = "metrotrace/v1/gw/market-2/up"
    data = site.seal(weighings(site), gateway="market-2", topic=other_topic)
    refused(loaded, Ingest(loaded), other_topic, data, "gateway_mismatch")


def test_batch_naming_another_gateway_than_its_topic(loaded, site):
    data = site.seal(weighings(site), gateway="market-2")
    refused(loaded, Ingest(loaded), site.topic, data, "gateway_mismatch")


def test_replay_of_a_stored_envelope(loaded, site):
    data = site.seal(weighings(site))
    ingest = Ingest(loaded)
    assert ingest.handle(site.topic, data, NOW).status == STORED
    refused(loaded, ingest, site.topic, data, "replay")
    assert loaded.count("records") == 5 and loaded.count("envelopes") == 1


def test_records_resent_in_a_new_envelope_are_harmless_duplicates(loaded, site):
    records = weighings(site)
    ingest = Ingest(loaded)
    ingest.handle(site.topic, site.seal(records), NOW)
    outcome = ingest.handle(site.topic, site.seal(records), NOW)  # new batch seq, same records
    assert (outcome.status, outcome.inserted, outcome.duplicates) == (STORED, 0, 5)
    assert loaded.count("records") == 5 and loaded.count("rejects") == 0


def test_forged_duplicate_is_rejected_and_raises_an_alert(loaded, site):
    ingest = Ingest(loaded)
    ingest.handle(site.topic, site.seal(weighings(site, 3)), NOW)
    site.next_seq = dict.fromkeys(site.node_ids, 1)  # the node reuses seq 1 for new bytes
    forged = site.weighing(0, T0 + 77, 4242)
    outcome = ingest.handle(site.topic, site.seal([forged]), NOW)
    assert [r.reason for r in outcome.record_rejects] == ["forgery"]
    (alert,) = outcome.alerts
    assert alert.site == site.site and alert.kind == "forgery" and alert.seq == 1
    assert loaded.alerts()[0].id == alert.id
    assert [r.value for r in loaded.records(node=site.node_ids[0])] == [1000]


def test_oversize_malformed_and_bad_topic(loaded, site):
    ingest = Ingest(loaded)
    refused(loaded, ingest, site.topic, b"\x00" * (envelope.MAX_ENVELOPE + 1), "oversize")
    refused(loaded, ingest, site.topic, b"\xff\x00garbage", "malformed")
    refused(loaded, ingest, "metrotrace/v1/gw/+/up", site.seal(weighings(site)), "bad_topic")


def test_malformed_record_inside_a_good_envelope(loaded, site):
    records = weighings(site, 2) + [(cbor2.dumps({0: 1, 1: 1}), b"t" * 32)]
    outcome = Ingest(loaded).handle(site.topic, site.seal(records), NOW)
    assert outcome.inserted == 2
    (row,) = loaded.rejects(reason="bad_record")
    assert row.detail == "node: missing"


def test_live_batch_from_the_future_is_refused_but_backfill_is_not_checked(loaded, site):
    ingest = Ingest(loaded)
    far = NOW + 3_600_000
    refused(loaded, ingest, site.topic, site.seal(weighings(site), created=far), "future_batch")
    backfill = site.seal(weighings(site), created=far, backfill=True)
    assert ingest.handle(site.topic, backfill, NOW).status == STORED


@pytest.fixture
def sqlite_loaded(tmp_path, site):
    from metrotrace.server.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'fuzz.sqlite3'}")
    for row in site.registry_rows():
        store.put(row)
    yield store
    store.close()


# The store is shared across examples on purpose: replays of earlier examples must be
# judged against what is already stored, as in a running worker.
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_ingest_never_raises_and_every_reject_has_a_known_reason(sqlite_loaded, site,
                                                                      data):
    fresh = Site(nodes=3)  # same keys and counters every example: the same bytes
    good = fresh.seal(weighings(fresh, 2))
    choice = data.draw(st.sampled_from(["bytes", "flip", "truncate", "cbor", "topic"]))
    topic = site.topic
    if choice == "bytes":
        payload = data.draw(st.binary(max_size=300))
    elif choice == "flip":
        i = data.draw(st.integers(0, len(good) - 1))
        payload = good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1:]
    elif choice == "truncate":
        payload = good[:data.draw(st.integers(0, len(good) - 1))]
    elif choice == "cbor":
        payload = cbor2.dumps(data.draw(st.recursive(
            st.none() | st.integers() | st.binary(max_size=20) | st.text(max_size=10),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.integers(-2, 6), c,
                                                                  max_size=4))))
    else:
        payload, topic = good, data.draw(st.text(max_size=40))
    outcome = Ingest(sqlite_loaded).handle(topic, payload, NOW)
    if outcome.status == REJECTED:
        assert outcome.reason in REASONS
    else:  # only an intact envelope can be stored
        assert payload == good and topic == site.topic


def test_a_group_of_messages_is_judged_as_if_one_by_one_and_stored_in_one_commit(loaded,
                                                                                 site):
    first = site.seal(weighings(site, 4))
    site.next_seq = dict.fromkeys(site.node_ids, 1)
    forged = site.seal([site.weighing(0, T0 + 5, 4242)])  # seq 1 again, other bytes
    messages = [(site.topic, first, NOW), (site.topic, b"\xff junk", NOW),
                (site.topic, first, NOW), (site.topic, forged, NOW)]
    outcomes = Ingest(loaded).handle_many(messages)
    assert [(o.status, o.reason) for o in outcomes] == [
        (STORED, None), (REJECTED, "malformed"), (REJECTED, "replay"), (STORED, None)]
    assert outcomes[0].inserted == 4 and [r.reason for r in outcomes[3].record_rejects] == [
        "forgery"]
    assert loaded.count("records") == 4 and loaded.count("envelopes") == 2


@pytest.mark.parametrize("length", [0, 1, 32, 64, 65, 200])
def test_node_tags_are_hmac_sha256_whatever_the_key_length(length):
    import hashlib
    import hmac

    from metrotrace.server.ingest.core import _pads

    key = hashlib.sha256(b"k").digest() * 7
    key = key[:length]
    for data in (b"", b"r" * 72, b"x" * 300):
        inner, outer = (h.copy() for h in _pads(key))
        inner.update(data)
        outer.update(inner.digest())
        assert outer.digest() == hmac.new(key, data, "sha256").digest()


def test_the_cyclic_collector_is_paused_for_a_group_and_resumed_after(sqlite_loaded, site):
    import gc

    ingest = Ingest(sqlite_loaded)
    seen = []
    ingest.listeners.append(lambda rows: seen.append(gc.isenabled()))
    assert gc.isenabled()
    assert ingest.handle(site.topic, site.seal(weighings(site)), NOW).status == STORED
    assert seen == [False] and gc.isenabled()

    def broken(batches):
        raise RuntimeError("database gone")

    sqlite_loaded.store_batches = broken
    with pytest.raises(RuntimeError, match="database gone"):
        ingest.handle(site.topic, site.seal(weighings(site)), NOW)
    assert gc.isenabled()  # resumed whatever happened
    del sqlite_loaded.store_batches
    gc.disable()  # turned off by someone else: left off
    try:
        ingest.handle(site.topic, b"\xff", NOW)
        assert not gc.isenabled()
    finally:
        gc.enable()
