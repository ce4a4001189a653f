# Board entry point, copied to the board as /main.py with /config.json beside it
# (docs/firmware.md). The only module that imports machine: it builds the drivers
# from the pins in the configuration and hands them to the portable application.
# Boards: ESP32 (sys.platform "esp32") and Raspberry Pi Pico / Pico W ("rp2").
# USB console, as the host node's (app/host.py): {"ready": true} once booted, one
# {"rec": {...}} line per stored record, service commands read from sys.stdin.

import asyncio
import gc
import sys
import time

import machine

from metro.app import config, console, tasks
from metro.app.build import build
from metro.app.echo import echo
from metro.core.flow import Extender
from metro.core.fwid import VERSION, FirmwareIdError, firmware_id, package_root

# machine.reset_cause() values by name. Ports define only some: rp2 has PWRON_RESET and
# WDT_RESET and no HARD/DEEPSLEEP/SOFT_RESET, so each is looked up, never assumed.
RESET_NAMES = ("PWRON", "HARD", "WDT", "DEEPSLEEP", "SOFT")


def reset_name(cause):
    """The audit name of a machine.reset_cause() value, "OTHER" if this port has none."""
    for name in RESET_NAMES:
        value = getattr(machine, name + "_RESET", None)
        if value is not None and value == cause:
            return name
    return "OTHER"


def identify():
    """(fw, fw_sha256, why) of the code this board runs. Frozen code is identified by its
    image where fwid can read it (ESP32); else the id says "unverified" and why, in every
    power_up and status record."""
    try:
        fw, fw_hash = firmware_id(VERSION, package_root())
        return fw, fw_hash, None
    except FirmwareIdError as err:
        return VERSION + "+unverified", "", str(err)


def uart(c):
    return machine.UART(c["id"], baudrate=c.get("baud", 9600), tx=machine.Pin(c["tx"]),
                        rx=machine.Pin(c["rx"]))


def scale_source(sc):
    if sc.get("source", "hx711") == "hx711":
        from metro.drivers.hx711 import HX711

        pins = sc["pins"]
        return HX711(machine.Pin(pins["sck"], machine.Pin.OUT),
                     machine.Pin(pins["dout"], machine.Pin.IN), sc.get("gain", 128),
                     time.ticks_ms, time.sleep_us, machine.disable_irq, machine.enable_irq,
                     ticks_diff=time.ticks_diff)
    from metro.drivers.indicator import Indicator
    from metro.drivers.lines import UartLines

    return Indicator(UartLines(uart(sc["uart"])), sc["source"], sc.get("unit", "g"))


def pulse_counter(pc):
    pin = machine.Pin(pc["pins"]["pulse"], machine.Pin.IN, machine.Pin.PULL_UP)
    if sys.platform == "esp32":
        from metro.drivers.pulse import HardwareCounter

        counter = machine.Counter(0, pin, filter_ns=10000)  # type: ignore[attr-defined]
        return HardwareCounter(counter), 16  # ESP32 PCNT: 16 bits, wraps
    from metro.drivers.pulse import PioCounter, pio_program

    rp2 = __import__("rp2")
    return PioCounter(rp2.StateMachine(0, pio_program(), in_base=pin)), 32


async def main():
    gc.threshold(max(4096, (gc.mem_alloc() + gc.mem_free()) // 16))  # see app/host.py
    cfg = config.load("/config.json")
    node_id = machine.unique_id()
    fw, fw_hash, fw_error = identify()
    node = build(cfg, node_id, fw)
    node.producer.echo = echo  # one {"rec": ...} line per stored record on USB
    node.power_up(reset_name(machine.reset_cause()), fw_hash, fw_error)
    key = bytes.fromhex(cfg["key"])
    health = tasks.Health(cfg.get("health_ms", 5000))
    if node.scale:
        period = cfg["scale"].get("period_ms", 100)
        asyncio.create_task(tasks.scale_loop(node, scale_source(cfg["scale"]), period,
                                             health))
    if node.dispenser:
        pc = cfg["dispenser"]
        counter, bits = pulse_counter(pc)
        nozzle_pin = machine.Pin(pc["pins"]["nozzle"], machine.Pin.IN, machine.Pin.PULL_UP)

        def nozzle():
            return nozzle_pin.value() == 0  # switch to ground when the nozzle is lifted

        asyncio.create_task(tasks.flow_loop(node, counter, Extender(bits), nozzle,
                                            pc.get("period_ms", 100), health))
    if cfg.get("scanner"):
        from metro.drivers.lines import UartLines

        lines = UartLines(uart(cfg["scanner"]["uart"]))
        asyncio.create_task(tasks.scan_loop(node, lines, 50, health))
    asyncio.create_task(tasks.status_loop(node, cfg["status_s"]))
    # Service console on the USB serial: parameter changes and seal state, audited.
    asyncio.create_task(console.console_loop(node, sys.stdin))
    asyncio.create_task(tasks.wdt_loop(health, machine.WDT(timeout=cfg["wdt_ms"]),
                                       cfg["wdt_ms"] // 4))
    print('{"ready": true}')  # booted: what a HIL rig waits for (docs/hil.md)
    if cfg["link"]["kind"] == "mqtt":  # Wi-Fi board: MQTT to the site broker, NTP time
        await wifi_uplink(cfg, node, key, health)
        return
    link = uart(cfg["link"]["uart"])
    reader = asyncio.StreamReader(link)
    writer = asyncio.StreamWriter(link, {})
    asyncio.create_task(tasks.rx_loop(node, reader, key))
    await tasks.tx_loop(node, writer, health, cfg["link"].get("period_ms", 20))


async def wifi_uplink(cfg, node, key, health):
    import network

    from metro.net.uplink import Uplink, settings

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wifi = cfg.get("wifi") or {}
    wlan.connect(wifi.get("ssid", ""), wifi.get("password", ""))  # reconnects on its own
    ntp = cfg.get("ntp")
    if ntp:
        from metro.net.timesync import ntp_loop

        asyncio.create_task(ntp_loop(node, ntp["host"], ntp.get("port", 123),
                                     ntp.get("every_s", 3600), ntp.get("retry_s", 10)))
    uplink = Uplink(node, key, settings(cfg["link"], node.producer.node.hex()), health,
                    cfg["link"].get("period_ms", 20))
    await uplink.run()  # connect attempts fail and back off until Wi-Fi is up


def start():
    asyncio.run(main())


# A board runs /main.py as __main__; `import main` (a test with a fake machine module,
# a REPL session) loads the code without starting the node.
if __name__ == "__main__":
    start()
