# A fake `rp2` for the stimulus firmware under the unix port: PIO programs are never
# assembled; a state machine takes words and, for a pulse train, says at once that the
# last pulse is out (the count is printed, not made).

import json


class PIO:
    OUT_LOW = 0
    OUT_HIGH = 1
    SHIFT_LEFT = 0


def asm_pio(**settings):
    return lambda program: program


class StateMachine:
    def __init__(self, sm_id, program, freq=0, **pins):
        self.id = sm_id
        self.freq = freq
        self.words = []

    def active(self, on):
        pass

    def put(self, word):
        self.words.append(word)
        if self.id == 0:
            print(json.dumps({"pio": self.id, "freq": self.freq, "word": word}))

    def tx_fifo(self):
        return len(self.words) % 4

    def rx_fifo(self):
        return 1 if self.words else 0

    def get(self):
        return self.words.pop()
