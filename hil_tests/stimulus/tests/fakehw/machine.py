# A fake `machine` for running the stimulus firmware (hil_tests/stimulus/main.py) under
# the MicroPython unix port: what the program does to pins and UARTs is printed as JSON
# lines beside its answers, so a test reads the "wires". Only what main.py uses.

import json


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2

    def __init__(self, pin, mode=-1, value=None):
        self.pin = pin
        self._value = value

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = v
        print(json.dumps({"pin": self.pin, "value": v}))


class UART:
    def __init__(self, uart_id, baudrate=9600, tx=None):
        self.id = uart_id
        self.baudrate = baudrate

    def write(self, data):
        print(json.dumps({"uart": self.id, "tx": data.decode()}))
        return len(data)
