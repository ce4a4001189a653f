# Record time and its quality (docs/protocol.md §1, key tq; OIML D 31 6.2.7).
#
# Until the clock is set, t is milliseconds since boot and tq says so (0). The clock
# is set only from NTP (tq 1) or from the gateway's tagged T frame (tq 2); each
# setting returns what an audit "clock_set" event must carry.
# Invariant: t never goes back within a boot unless it is set, and ticks that wrap
# (time.ticks_ms on a board wraps after 2^30 ms or so) are accumulated, not lost.

TQ_UNSET = 0
TQ_NTP = 1
TQ_GATEWAY = 2


class Clock:
    def __init__(self, ticks_ms, ticks_diff):
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._last = ticks_ms()
        self.uptime_ms = 0
        self.offset = 0  # UTC ms at uptime 0, once set
        self.tq = TQ_UNSET

    def _advance(self):
        now = self._ticks_ms()
        self.uptime_ms += self._ticks_diff(now, self._last)
        self._last = now
        return self.uptime_ms

    def now(self):
        """(t, tq) for a record made now."""
        up = self._advance()
        return up + self.offset, self.tq

    def set(self, utc_ms, tq):
        """Set the clock; returns the detail of the audit event it calls for."""
        old, old_tq = self.now()
        self.offset = utc_ms - self.uptime_ms
        self.tq = tq
        return {"old": old, "new": utc_ms, "old_tq": old_tq, "tq": tq}
