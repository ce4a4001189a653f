# Flow meter pulse counters. Each offers value(): a count that only grows and may
# wrap (core.flow.Extender makes it monotonic); none is ever reset mid-transaction.
#
# - ESP32: machine.Counter (or esp32.PCNT) counts in hardware; handed in ready-made.
# - RP2040: a PIO state machine counts falling edges into X (x_dec), or, without
#   PIO, a pin interrupt whose handler only increments a counter (micropython-async
#   INTERRUPTS.md: no allocation, no work in the handler).
# rp2 is imported only inside pio_program(), so this module loads on any port.


class HardwareCounter:
    """machine.Counter(id, pin, ...) on an ESP32: value() read, never reset."""

    def __init__(self, counter):
        self.counter = counter

    def value(self):
        return self.counter.value()


class IrqCounter:
    """Counts edges on an injected Pin from its interrupt handler."""

    def __init__(self, pin, trigger):
        self.count = 0
        pin.irq(handler=self._edge, trigger=trigger)

    def _edge(self, _pin):
        self.count += 1

    def value(self):
        return self.count & 0x3FFFFFFF  # stay a small int: no heap use in the handler


def pio_program():
    """The RP2040 PIO counter: X counts down once per full low-high pulse."""
    import rp2  # type: ignore[import-not-found,unused-ignore]  # absent from ESP32 stubs

    @rp2.asm_pio()
    def count_edges():
        label("loop")  # type: ignore[name-defined]  # noqa: F821
        wait(0, pin, 0)  # type: ignore[name-defined]  # noqa: F821
        wait(1, pin, 0)  # type: ignore[name-defined]  # noqa: F821
        jmp(x_dec, "loop")  # type: ignore[name-defined]  # noqa: F821

    return count_edges


class PioCounter:
    """value() of a StateMachine running pio_program(): pushes X on request."""

    def __init__(self, sm):
        self.sm = sm
        sm.exec("set(x, 0)")
        sm.active(1)

    def value(self):
        self.sm.exec("mov(isr, x)")
        self.sm.exec("push()")
        return (-self.sm.get()) & 0xFFFFFFFF
