"""COSE_Sign1 envelopes: what the gateway seals, the server and third parties can open."""

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from metrotrace.gateway import envelope
from metrotrace.gateway.envelope import Batch, EnvelopeError

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KID = envelope.key_id(KEY.public_key())
TOPIC = "metrotrace/v1/gw/market-1/up"
BATCH = Batch("market-1", 42, 1763884800000, ((b"\xa1\x00\x01", b"t" * 32),), False)


def lookup(kid):
    return KEY.public_key() if kid == KID else None


def test_seal_then_open_returns_the_batch():
    opened = envelope.open_envelope(envelope.seal(BATCH, KEY, TOPIC), TOPIC, lookup)
    assert opened.batch == BATCH and opened.kid == KID and opened.alg == -19


@pytest.mark.parametrize("alg", [envelope.ALG_EDDSA, envelope.ALG_ED25519])
def test_third_party_cose_library_verifies_the_envelope(alg):
    from cwt import COSE, COSEKey

    data = envelope.seal(BATCH, KEY, TOPIC, alg=alg)
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    key = COSEKey.from_pem(pem, alg="EdDSA", kid=KID)
    payload = COSE.new().decode(data, key, external_aad=TOPIC.encode())
    assert cbor2.loads(payload)[2] == 42
    with pytest.raises(Exception, match="(?i)verif|signature"):
        COSE.new().decode(data, key, external_aad=b"another topic")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "bad_signature"),
        (lambda d: d[:12] + b"\x00" + d[13:], None),  # damage in the header or payload
        (lambda d: b"\xff" + d, "malformed"),
        (lambda d: b"x" * (envelope.MAX_ENVELOPE + 1), "oversize"),
        (lambda d: cbor2.dumps(cbor2.CBORTag(98, [])), "malformed"),
    ],
)
def test_damaged_envelopes_are_refused_with_a_reason(mutate, reason):
    data = mutate(envelope.seal(BATCH, KEY, TOPIC))
    with pytest.raises(EnvelopeError) as info:
        envelope.open_envelope(data, TOPIC, lookup)
    assert reason is None or info.value.reason == reason


def test_envelope_is_bound_to_its_topic():
    data = envelope.seal(BATCH, KEY, TOPIC)
    with pytest.raises(EnvelopeError, match="bad_signature"):
        envelope.open_envelope(data, "metrotrace/v1/gw/other/up", lookup)


def test_unknown_key_is_refused():
    other = Ed25519PrivateKey.generate()
    with pytest.raises(EnvelopeError, match="unknown_key"):
        envelope.open_envelope(envelope.seal(BATCH, other, TOPIC), TOPIC, lookup)


@given(st.binary(max_size=400))
def test_any_bytes_give_a_batch_or_an_envelope_error(data):
    try:
        envelope.open_envelope(data, TOPIC, lookup)
    except EnvelopeError as e:
        assert e.reason


GOOD = (b"\xa1\x00\x01", b"t" * 32)


@pytest.mark.parametrize("bad", [
    (b"r",), (b"r", b"t" * 32, b"x"), (b"r", b"t" * 31), (b"r", "t" * 32), ("r", b"t" * 32),
    b"r", 7, {0: b"r"},
])
def test_a_bad_record_pair_is_named_by_its_index(bad):
    data = envelope.seal(Batch("market-1", 1, 1, (GOOD, bad, GOOD), False), KEY, TOPIC)
    with pytest.raises(EnvelopeError, match=r"records\[1\]: expected \[record, 32-byte tag\]"):
        envelope.open_envelope(data, TOPIC, lookup)


def test_good_pairs_come_back_as_tuples_in_order():
    pairs = tuple((bytes([i]) * i, bytes([i]) * 32) for i in range(5))
    data = envelope.seal(Batch("market-1", 1, 1, pairs, False), KEY, TOPIC)
    assert envelope.open_envelope(data, TOPIC, lookup).batch.records == pairs
    empty = envelope.seal(Batch("market-1", 1, 1, (), False), KEY, TOPIC)
    assert envelope.open_envelope(empty, TOPIC, lookup).batch.records == ()
