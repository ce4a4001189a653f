# Numerical Recipes LCG: the same numbers on CPython and MicroPython for one seed.


class Lcg:
    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFF

    def below(self, n):
        self.state = (1664525 * self.state + 1013904223) & 0xFFFFFFFF
        return (self.state >> 8) % n

    def noise(self, amplitude):
        """A roughly normal integer in about ±3 amplitude (sum of three uniforms)."""
        if amplitude <= 0:
            return 0
        span = 2 * amplitude + 1
        return self.below(span) + self.below(span) + self.below(span) - 3 * amplitude
