# What the fake board does at power-up before its REPL (micropython -i boot.py): as a
# board with /main.py runs it, it checks the deployed firmware and the config it would
# run with, takes about a board's boot time, and says {"ready": true} on its console.
# Without /main.py (parked) it goes straight to the REPL, as a board with no program.

import json
import os
import sys
import time

try:
    os.stat("main.py")
    has_main = True
except OSError:
    has_main = False
if has_main:
    time.sleep(1.0)  # the console is opened after the reset: a board takes this long too
    sys.path.append("lib")
    from metro.app import config  # the deployed .mpy, as the board's main.py imports it
    from metro.core.fwid import firmware_id

    cfg = config.load("config.json")
    fw = firmware_id(cfg["fw_version"], "lib/metro")[0]
    data = cfg["data_dir"].lstrip("/")  # the board's / is the flash folder
    kept = sorted(os.listdir(data)) if data in os.listdir() else None
    print(json.dumps({"ready": True, "fw": fw, "data": kept}))
