"""Records per second through the gateway: UART bytes -> decode -> verify -> store
(SQLite WAL, one commit per chunk, fsynced: the node's ack depends on it) -> seal
(COSE_Sign1, Ed25519) -> publish (QoS 1, bounded window) -> PUBACK -> delete, to a
Mosquitto of its own. The same calls per chunk as `gateway run` makes
(FastDecoder.feed_chunk, Intake.receive, Uplink.step).

Baselines measured in the same run, same broker, same process pinning:
- raw_publish: paho publishing the same sealed envelope bytes (same batch size),
  QoS 1, same window: the transport's own ceiling for these bytes;
- per_record_publish: paho publishing each record + tag as its own QoS 1 message,
  what a gateway without batching would be held to.

    python bench/gateway.py [--records N] [--batch N] [--quick] [--cores N]

Last line: one JSON object (records_per_s, ratio_to_raw_publish, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402

from metrotrace.firmware.metro.wire import frame  # noqa: E402
from metrotrace.gateway import envelope  # noqa: E402
from metrotrace.gateway.batcher import Batcher  # noqa: E402
from metrotrace.gateway.counters import Counters  # noqa: E402
from metrotrace.gateway.fastwire import FastDecoder  # noqa: E402
from metrotrace.gateway.intake import Intake  # noqa: E402
from metrotrace.gateway.keys import KeyRing  # noqa: E402
from metrotrace.gateway.outbox import Outbox  # noqa: E402
from metrotrace.gateway.uplink import Uplink  # noqa: E402
from metrotrace.gateway.verify import Verifier  # noqa: E402
from metrotrace.tools import simnode  # noqa: E402
from tests.gwharness import Mosquitto  # noqa: E402

NODES = [bytes([i]) * 8 for i in range(1, 5)]
T0 = 1_763_884_800_000
TOPIC = "metrotrace/v1/gw/bench/up"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def node_streams(total: int) -> tuple[dict[bytes, bytes], list[bytes], list[tuple]]:
    keys = {n: os.urandom(32) for n in NODES}
    chunks, pairs = [], []
    for n in NODES:
        for rec in simnode.records(n, total // len(NODES), T0, n[0]):
            chunks.append(frame.record_frame(rec, keys[n]))
            pairs.append((rec, chunks[-1]))
    return keys, chunks, pairs


def run_gateway(work: Path, port: int, keys, frames: list[bytes], batch: int, window: int,
                chunk_bytes: int) -> tuple[float, dict, Path]:
    ring = KeyRing.create(work / "keys", now_ms())
    outbox = Outbox(work / "outbox.sqlite", 10_000_000, "full")
    counters = Counters()
    intake = Intake(Verifier(keys, seen=outbox), outbox, counters, now_ms, lambda a: None)
    # Window 0: a batch is sealed as soon as the window has room.
    batcher = Batcher("bench", TOPIC, ring, batch, 0, 3_600_000)
    uplink = Uplink(host="127.0.0.1", port=port, client_id="bench-gw", keepalive=30,
                    up_topic=TOPIC, status_topic="metrotrace/v1/gw/bench/status",
                    alert_topic="metrotrace/v1/alerts/bench", outbox=outbox, batcher=batcher,
                    counters=counters, window=window, birth=lambda: {"state": "online"},
                    clock=now_ms, status_interval_s=3600)
    # The bench plays the server: a gateway publishes only once the server says online.
    import paho.mqtt.publish as single

    single.single("metrotrace/v1/server/status", '{"state": "online"}', qos=1, retain=True,
                  hostname="127.0.0.1", port=port)
    uplink.step()  # connect
    stream = b"".join(frames)
    decoder = FastDecoder()
    total = len(frames)
    started = time.perf_counter()
    cpu_started = time.process_time()
    for i in range(0, len(stream), chunk_bytes):
        intake.receive(decoder.feed_chunk(stream[i:i + chunk_bytes]))
        uplink.step()
    while counters.snapshot()["forwarded"] < total:
        uplink.step()
        uplink.wake.wait(0.002)
        uplink.wake.clear()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stop = threading.Event()
    stop.set()
    uplink.run(stop)
    outbox.close()
    return elapsed, {**counters.snapshot(), "cpu_s": cpu}, work / "keys"


def publish_all(port: int, payloads: list[bytes], window: int, client_id: str) -> float:
    """paho alone: QoS 1 publishes of `payloads`, at most `window` unacknowledged."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *a: acked.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.perf_counter()
    inflight = 0
    for payload in payloads:
        if inflight >= window:
            acked.acquire()
            inflight -= 1
        client.publish(TOPIC, payload, qos=1)
        inflight += 1
    for _ in range(inflight):
        acked.acquire()
    elapsed = time.perf_counter() - started
    client.loop_stop()
    client.disconnect()
    return elapsed


def stage_rates(keys, frames: list[bytes], batch: int, work: Path) -> dict:
    """Each stage alone, records per second, to show where the time goes."""
    stream = b"".join(frames)
    t = time.perf_counter()
    frame.Decoder().feed(stream)
    firmware_decode = len(frames) / (time.perf_counter() - t)
    t = time.perf_counter()
    chunks = []
    fast = FastDecoder()
    for i in range(0, len(stream), 65536):
        chunks.append(fast.feed_chunk(stream[i:i + 65536]))
    decode = len(frames) / (time.perf_counter() - t)
    outbox = Outbox(work / "stages.sqlite", 10_000_000, "full")
    intake = Intake(Verifier(keys, seen=outbox), outbox, Counters(), now_ms, lambda a: None)
    t = time.perf_counter()
    for chunk in chunks:
        intake.receive(chunk)
    store = len(frames) / (time.perf_counter() - t)
    ring = KeyRing.create(work / "stage-keys", now_ms())
    batcher = Batcher("bench", TOPIC, ring, batch, 0, 3_600_000)
    run = outbox.take_pending(len(frames))
    t = time.perf_counter()
    for i in range(0, len(run), batch):
        batcher.seal(run[i:i + batch], i + 1, now_ms())
    seal = len(run) / (time.perf_counter() - t)
    outbox.close()
    return {"decode": round(decode), "decode_firmware": round(firmware_decode),
            "verify_store": round(store), "seal": round(seal)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--cores", type=int, default=1, help="pin this process to N cores")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (20,000)")
    args = parser.parse_args()
    total = 20_000 if args.quick else args.records
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    keys, frames, pairs = node_streams(total)
    total = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work)
        broker.start()
        try:
            elapsed, counts, _ = run_gateway(work, broker.port, keys, frames, args.batch,
                                             args.window, 65536)
            ring = KeyRing.load(work / "keys")
            key = ring.entries[0].key
            envelopes = []
            for i in range(0, total, args.batch):
                chunk = pairs[i:i + args.batch]
                recs = tuple((rec, frame.Decoder().feed(fr)[0].split_tag()[1])
                             for rec, fr in chunk)
                envelopes.append(envelope.seal(
                    envelope.Batch("bench", i + 1, now_ms(), recs, False), key, TOPIC))
            raw = publish_all(broker.port, envelopes, args.window, "bench-raw")
            singles = [fr[1:-1] for _, fr in pairs[: min(total, 20_000)]]
            per_record = publish_all(broker.port, singles, args.window, "bench-single")
            stages = stage_rates(keys, frames[: min(total, 40_000)], args.batch, work)
        finally:
            broker.stop()
    assert counts["forwarded"] == total and counts["accepted"] == total, counts
    records_per_s = total / elapsed
    raw_rps = total / raw
    single_rps = len(singles) / per_record
    result = {
        "records": total,
        "batch": args.batch,
        "window": args.window,
        "cores": args.cores,
        "synchronous": "full",
        "records_per_s": round(records_per_s),
        # The gateway process's own CPU time (all its threads): on a machine shared
        # with other work, records per CPU second is what one core it had to itself
        # would give, fsync waits aside.
        "records_per_cpu_s": round(total / counts["cpu_s"]),
        "cpu_share": round(counts["cpu_s"] / elapsed, 2),
        "raw_publish_records_per_s": round(raw_rps),
        "ratio_to_raw_publish": round(records_per_s / raw_rps, 3),
        "per_record_publish_msgs_per_s": round(single_rps),
        "ratio_to_per_record_publish": round(records_per_s / single_rps, 2),
        "stages_records_per_s": stages,
        "batches": counts["batches"],
    }
    print(f"gateway: {total} records in {elapsed:.2f} s = {records_per_s:,.0f} records/s "
          f"(decode, verify, store, seal, publish, PUBACK, delete)")
    print(f"gateway process CPU: {counts['cpu_s']:.2f} s = {total / counts['cpu_s']:,.0f} "
          f"records per CPU second (it had {counts['cpu_s'] / elapsed:.0%} of the core)")
    print(f"paho alone, same envelope bytes: {raw_rps:,.0f} records/s "
          f"-> ratio {records_per_s / raw_rps:.3f}")
    print(f"paho alone, one QoS 1 message per record: {single_rps:,.0f} msgs/s "
          f"-> gateway is {records_per_s / single_rps:.2f}x that")
    print(f"stages alone (records/s): {stages}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
