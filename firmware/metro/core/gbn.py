# Go-back-N sending of the outbox (docs/protocol.md §5), sans-IO.
#
# The sender hands out records oldest first, at most `window` unacknowledged at a
# time. An acknowledgement A deletes what it covers (Outbox.ack) and opens the window.
# When no acknowledgement moves A for `timeout_ms`, the sender goes back to the oldest
# unacknowledged record and sends everything again; the timeout doubles on each
# silent round up to `max_timeout_ms`, so a gateway that never answers costs little,
# and after `silent_after` silent rounds one "gateway_silent" event is raised.
# Invariant: every record on flash is offered again until it is acknowledged.
# Times are a board's time.ticks_ms(), which wraps (after 2^30 ms on ESP32, RP2040 and
# the unix port): they are compared only through `diff` (time.ticks_diff semantics:
# diff(new, old) = ms from old to new), never by plain subtraction, so a wrap while an
# acknowledgement is lost cannot make the timeout look negative and stall the node.


def _subtract(new, old):  # a counter that never wraps (tests, CPython)
    return new - old


class Sender:
    def __init__(self, outbox, window=8, timeout_ms=2000, max_timeout_ms=30000,
                 silent_after=4, diff=_subtract):
        self.outbox = outbox
        self.diff = diff  # time.ticks_diff on a board
        self.window = window
        self.base_timeout = timeout_ms
        self.timeout = timeout_ms
        self.max_timeout = max_timeout_ms
        self.silent_after = silent_after
        self.cursor = outbox.cursor()
        self.sent = []  # seqs sent and not yet acknowledged, oldest first
        self.since = 0  # when the oldest of them was sent or A last moved
        self.rounds = 0  # silent rounds in a row
        self.resends = 0

    def due(self, now_ms):
        """(seq, payload) pairs to send now."""
        out = []
        while len(self.sent) < self.window:
            got = self.cursor.next()
            if got is None:
                break
            if not self.sent:
                self.since = now_ms
            self.sent.append(got[0])
            out.append(got)
        return out

    def acked(self, seq, now_ms):
        """The gateway's mark A. Returns events to record (dicts), usually none."""
        self.outbox.ack(seq)
        moved = False
        while self.sent and self.sent[0] <= seq:
            self.sent.pop(0)
            moved = True
        events = []
        if moved:
            if self.rounds >= self.silent_after:
                events.append({"code": "gateway_back", "detail": {"rounds": self.rounds}})
            self.since = now_ms
            self.rounds = 0
            self.timeout = self.base_timeout
        return events

    def restart(self):
        """A new connection: whatever was in flight is sent again, oldest first."""
        self.sent = []
        self.cursor = self.outbox.cursor()

    def poll(self, now_ms):
        """Go back when the gateway is silent. Returns events to record."""
        if not self.sent or self.diff(now_ms, self.since) < self.timeout:
            return []
        self.resends += len(self.sent)
        self.sent = []
        self.cursor = self.outbox.cursor()
        self.rounds += 1
        self.timeout = min(self.timeout * 2, self.max_timeout)
        if self.rounds == self.silent_after:
            return [{"code": "gateway_silent",
                     "detail": {"rounds": self.rounds, "backlog": self.outbox.backlog()}}]
        return []
