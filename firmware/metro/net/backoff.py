# Reconnect back-off (research/iot.md §4.1: mqtt_as recovers from outages on its own):
# waits that double from first_ms up to max_ms, each shortened by a random part of up
# to a quarter so that a fleet of nodes does not reconnect in step after a broker
# restart. Pure: rand is a parameter (random.getrandbits on a board).


class Backoff:
    """Waits of first_ms, doubling up to max_ms, each shortened by up to a quarter."""

    def __init__(self, first_ms=500, max_ms=30000, rand=None):
        self.first_ms = first_ms
        self.max_ms = max_ms
        self.wait = first_ms
        if rand is None:
            import random

            rand = random.getrandbits
        self._rand = rand  # rand(8): 0..255

    def next(self):
        wait = self.wait
        self.wait = min(self.wait * 2, self.max_ms)
        return wait - wait * self._rand(8) // 1024

    def reset(self):
        self.wait = self.first_ms
