# The fake board's `machine` (it shadows the unix port's own): an id, and a reset that
# ends the interpreter so that the FakeBoard supervisor boots it again, as a board
# comes back from machine.reset().

import sys

UNIQUE_ID = b"\xfa\x4e\xb0\xa2\xd0\x00\x00\x01"


def unique_id():
    return UNIQUE_ID


def reset():
    sys.exit(0)
