"""What the gateway has done, counted: the numbers on the status topic and in the log.

    received   record frames that reached the verifier (good or bad)
    accepted   new records stored durably in the outbox
    duplicate  resends of records already stored (acknowledged again, not stored again)
    rejected   {reason: n} - frame rejects (crc, cobs, record, ...), verdicts
               (unknown_node, bad_tag, forgery, stale) and outbox_full
    queued     records in the outbox now (a gauge)
    forwarded  records in batches the broker has acknowledged
    resent     records published again (after a reconnect or a restart)
    batches    envelopes published

Invariant: counts only grow within a process (queued excepted); a snapshot is a plain
JSON-able dict.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter

log = logging.getLogger("metrotrace.gateway")


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.queued = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def add_many(self, counts: dict[str, int], rejected: dict[str, int]) -> None:
        """A chunk's counts at once (one lock, not one per record)."""
        with self._lock:
            self.counts.update(counts)
            self.rejected.update(rejected)

    def reject(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.rejected[reason] += n

    def snapshot(self) -> dict:
        with self._lock:
            names = ("received", "accepted", "duplicate", "forwarded", "resent", "batches")
            return {
                **{name: self.counts[name] for name in names},
                "rejected": dict(sorted(self.rejected.items())),
                "queued": self.queued,
            }


def log_event(event: str, **fields) -> None:
    """One structured log line: a JSON object with an `event` name."""
    log.info(json.dumps({"event": event, **fields}, sort_keys=True, default=str))
