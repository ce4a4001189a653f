# Runs the plain test functions of the named modules under the MicroPython unix port:
#   MICROPYPATH=firmware:firmware/tests micropython -X heapsize=64k mprun.py test_wire
# Prints one line per failure and closes with "N passed, N failed".

import gc
import sys


def run(names):
    if ".frozen" not in sys.path:  # asyncio is frozen into the unix port
        sys.path.append(".frozen")
    gc.threshold(4096)  # as the node does (app/host.py compact_gc): keeps the heap whole
    passed = failed = 0
    peak = 0
    for name in names:
        module = __import__(name)
        for attr in sorted(dir(module)):
            if not attr.startswith("test_"):
                continue
            gc.collect()
            try:
                getattr(module, attr)()
                passed += 1
            except Exception as e:  # report every failure, then go on with the rest
                failed += 1
                print("FAIL %s.%s: %s %s" % (name, attr, type(e).__name__, e))
                sys.print_exception(e)
            gc.collect()
            peak = max(peak, gc.mem_alloc())
    print("most heap held after a test: %d bytes" % peak)
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if run(sys.argv[1:]) else 0)
