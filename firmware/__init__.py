# The MicroPython firmware. Subpackages are deployed to a board's /lib; on the host
# they are importable as metrotrace.firmware.* so that the gateway shares the code.
