# The node wire format: the single source of truth for records, tags and frames.
# Pure code: runs unchanged on CPython and MicroPython (no machine, no I/O).
