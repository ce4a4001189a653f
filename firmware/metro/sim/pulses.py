# A fuel dispenser's flow meter and nozzle switch, simulated.
#
# value() behaves like machine.Counter on an ESP32 (a 16-bit count that wraps);
# nozzle() like the nozzle switch pin (True while the nozzle is lifted). step()
# advances the simulated pump by one poll.

from .rng import Lcg


class SimPump:
    def __init__(self, seed=2, pulses_per_poll=400, polls_on=6, polls_off=4, bits=16):
        self.rng = Lcg(seed)
        self.pulses_per_poll = pulses_per_poll
        self.polls_on = polls_on
        self.polls_off = polls_off
        self.mod = 1 << bits
        self.count = 0
        self.lifted = False
        self._left = polls_off
        self.burst = 0  # tests: add this many pulses at the next step (an absurd rate)

    def step(self, now=None):
        self._left -= 1
        if self._left <= 0:
            self.lifted = not self.lifted
            self._left = (self.polls_on if self.lifted else self.polls_off) + self.rng.below(3)
        if self.lifted:
            self.count += self.pulses_per_poll + self.rng.below(self.pulses_per_poll // 4 + 1)
        self.count += self.burst
        self.burst = 0

    def value(self):
        return self.count % self.mod

    def nozzle(self):
        return self.lifted
