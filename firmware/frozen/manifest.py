# What the small-heap build freezes into the MicroPython image (firmware/frozen/build):
# asyncio, as every port's firmware carries it, and the whole metro package, so that its
# bytecode and interned names live in the image and not in the heap.
include("$(MPY_DIR)/extmod/asyncio")
package("metro", base_path="..")
