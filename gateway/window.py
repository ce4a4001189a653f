"""The bounded window of unacknowledged publishes (sans-IO).

paho-mqtt keeps every unacknowledged QoS 1 message in memory and stalls for good once
about 65,000 are queued (paho-mqtt issue #377), so the outbox is the buffer and at most
`size` batches are ever handed to paho. The window maps paho's message ids to batch
seqs; a PUBACK frees a slot and names the batch to delete from the outbox.

Invariants: len(inflight) <= size; a batch seq is in flight at most once; `cursor` is
the highest batch seq handed out on this connection, so batches are published in seq
order and each once per connection (a new connection starts again from the outbox).
"""

from __future__ import annotations


class Window:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size: must be at least 1")
        self.size = size
        self.inflight: dict[int, tuple[int, int]] = {}  # mid -> (batch seq, records)
        self.cursor = 0
        self._retry: list[int] = []

    def room(self) -> int:
        return self.size - len(self.inflight)

    def sent(self, mid: int, batch_seq: int, records: int) -> None:
        if len(self.inflight) >= self.size:
            raise RuntimeError("window full: check room() before publishing")
        self.inflight[mid] = (batch_seq, records)
        self.cursor = max(self.cursor, batch_seq)

    def acked(self, mid: int) -> tuple[int, int] | None:
        """PUBACK for mid: (batch seq, records), or None for a message not ours."""
        return self.inflight.pop(mid, None)

    def refused(self, mid: int) -> int | None:
        """The broker answered with a failure code: publish that batch again later.
        Returns its seq (None for a message not ours)."""
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return None
        self._retry.append(entry[0])
        return entry[0]

    def take_retry(self) -> int | None:
        return self._retry.pop(0) if self._retry else None

    def reset(self) -> None:
        """Connection lost: nothing is in flight any more; start again from the outbox."""
        self.inflight.clear()
        self._retry.clear()
        self.cursor = 0


class Backoff:
    """Reconnect delays: doubling from `first` up to `cap`, back to `first` on success."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def delay(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first
