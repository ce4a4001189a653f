# Exact pulse trains from a PIO state machine: the count is a loop counter, so N pulses
# are exactly N; the rate is the state machine's clock divided by the cycles per pulse.
# The program (pio.py, pulse_train) spends CYCLES per pulse: high for CYCLES/2, low for
# CYCLES/2 (the jmp included). RP2040 datasheet 3.5.5: a state machine runs at
# sys_clk / div, div in 1..65536 in 1/256 steps; at 125 MHz: 1907 Hz .. 125 MHz.
# Pure: plan() checks the request and returns what to load; nothing touches the PIO.

CYCLES = 32
SYS_HZ = 125000000
MIN_SM_HZ = 1908  # 125 MHz / 65536, rounded up
MAX_HZ = SYS_HZ // CYCLES // 4  # keep edges clean through an opto or a long wire


class PlanError(ValueError):
    pass


def plan(n, hz, sys_hz=SYS_HZ):
    """(state machine frequency, FIFO word) for n pulses at hz; n == 0 sends nothing."""
    if n < 0 or n > 0xFFFFFFFF:
        raise PlanError("pulses: 0..4294967295")
    sm_hz = int(hz * CYCLES)
    if sm_hz < MIN_SM_HZ:
        raise PlanError("hz: at least %d with %d cycles per pulse" % (
            (MIN_SM_HZ + CYCLES - 1) // CYCLES, CYCLES))
    if hz > MAX_HZ:
        raise PlanError("hz: at most %d" % MAX_HZ)
    return sm_hz, n - 1  # the program loops x-- from n - 1 down to 0: n pulses


def duration_ms(n, hz):
    return (n * 1000 + int(hz) - 1) // int(hz) if n else 0
