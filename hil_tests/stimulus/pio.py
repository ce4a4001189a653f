# PIO programs of the stimulus board (RP2040 datasheet ch. 3; MicroPython rp2.asm_pio).
# Imported only on the Pico: rp2 does not exist elsewhere (mpy-cross still compiles it).
#
# pulse_train: pull N-1, then N pulses of 16 cycles high and 16 low, then push a word
#   to say "done" (pulseplan.CYCLES = 32 per pulse).
# hx711: emulates the chip's serial interface. DOUT low = a conversion is ready; on each
#   PD_SCK rising edge the next bit appears on DOUT, MSB first (datasheet: data are
#   valid shortly after the rising edge; the PIO answers in ~16 ns at 125 MHz); after 24
#   bits one more clock (gain 128, channel A) and DOUT goes high until the next word.

import rp2


@rp2.asm_pio(set_init=rp2.PIO.OUT_LOW)
def pulse_train():
    pull(block)  # noqa: F821 - PIO assembler names
    mov(x, osr)  # noqa: F821
    label("pulse")  # noqa: F821
    set(pins, 1)[15]  # noqa: F821
    set(pins, 0)[14]  # noqa: F821
    jmp(x_dec, "pulse")  # noqa: F821
    push(block)  # noqa: F821


@rp2.asm_pio(out_init=rp2.PIO.OUT_HIGH, set_init=rp2.PIO.OUT_HIGH,
             out_shiftdir=rp2.PIO.SHIFT_LEFT)
def hx711():
    pull(block)  # noqa: F821
    set(pins, 0)  # noqa: F821 - data ready
    set(x, 23)  # noqa: F821
    label("bit")  # noqa: F821
    wait(1, pin, 0)  # noqa: F821
    out(pins, 1)  # noqa: F821
    wait(0, pin, 0)  # noqa: F821
    jmp(x_dec, "bit")  # noqa: F821
    wait(1, pin, 0)  # noqa: F821 - the 25th pulse: gain 128 next
    set(pins, 1)  # noqa: F821
    wait(0, pin, 0)  # noqa: F821
