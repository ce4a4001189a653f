"""`metrotrace demo`: the whole system on one machine, end to end, then a summary.

Starts, in order: an MQTT broker of its own (Mosquitto on a free port), the registry
(sites, gateway keys, node keys, instruments) and the upstream supply network in an
SQLite store, one ingest worker, the HTTP API with the dashboard, the server's periodic
jobs (trace rules, drift engine), a gateway per site (real `metrotrace gateway run`, boards
on ptys) and six boards running the real firmware under MicroPython (tools/demo_nodes.py),
which tools/demo_day.py then puts through a compressed market day; half-way through, an
intruder replays a batch and forges a sale (tools/demo_intruder.py), which the server must
refuse. It shows progress while it runs (a live table on a terminal, a status line every
10 s when the output is piped) and prints a summary (tools/demo_summary.py) after
`--duration` seconds or Ctrl-C. The drift settings (known check sigma, baseline) are
written once to DIR/drift-settings.json, which the server's jobs, the dashboard and the
summary all read.

Invariant: whatever happens (Ctrl-C, a part that fails to start, an exception), every
process the demo started is stopped before it returns (tools/demo_procs.py), and the
summary says if any was left.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
import webbrowser
from pathlib import Path

from rich.console import Console
from rich.live import Live

from metrotrace.server.metrology import settings as drift
from metrotrace.tools import demo_day, demo_intruder, demo_summary, hostnode
from metrotrace.tools.demo_nodes import NodeRunner, firmware_build
from metrotrace.tools.demo_procs import (
    Procs,
    metrotrace_command,
    port_in_use,
    start_broker,
    wait_port,
    wait_server_online,
)
from metrotrace.tools.demo_scenario import GATEWAYS, NODES, drift_settings, registry, supply
from metrotrace.tools.storeargs import SQLITE_FILE, default_data_dir

MARKER = ".metrotrace-demo"
DAY_MS = 86_400_000
STATUS_EVERY_S = 10.0  # a progress line this often when the output is not a terminal
INTRUDER_AT = 0.5  # of the day: when the intruder sends its replay and its forgery


class DemoError(RuntimeError):
    """The demo cannot run (a port taken, a data directory that is not the demo's, ...)."""


def prepare(data_dir: Path | None) -> Path:
    """A clean data directory: a previous demo's is emptied, anything else is refused."""
    data = (data_dir or default_data_dir() / "demo").resolve()
    if data.exists() and any(data.iterdir()):
        if not (data / MARKER).exists():
            raise DemoError(f"--data-dir {data}: not empty and not a previous demo's; "
                            "name an empty or new directory")
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True)
    (data / MARKER).write_text("made by `metrotrace demo`; emptied by the next run\n")
    return data


def _cli(*argv: str) -> str:
    """Run a `metrotrace` command in this process (the real command, quiet); its stdout."""
    from metrotrace.tools.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    if code:
        raise DemoError(f"metrotrace {' '.join(argv)} failed ({code}): {out.getvalue()}")
    return out.getvalue()


def _gateway_toml(gw, folder: Path, broker_port: int, ports: list[str]) -> Path:
    text = (f'[gateway]\nid = "{gw.id}"\nsite = "{gw.site}"\nkey_dir = "keys"\n'
            f'node_keys = "nodes.json"\n[broker]\nhost = "127.0.0.1"\nport = {broker_port}\n'
            f'[serial]\nports = {json.dumps(ports)}\n[outbox]\npath = "outbox.sqlite"\n'
            f'[status]\ninterval_s = 5\n')
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gateway.toml"
    path.write_text(text)
    return path


def _open_browser(url: str, console: Console) -> None:
    # A console browser (lynx, w3m) would take over the terminal: only try with a display.
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        console.print(f"no display: open {url} in a browser")
        return
    try:
        webbrowser.open(url)
    except webbrowser.Error as err:
        console.print(f"could not open a browser ({err}): open {url}")


class Demo:
    def __init__(self, data: Path, port: int, duration: float, console: Console,
                 influx_url: str | None = None) -> None:
        self.data, self.port, self.duration, self.console = data, port, duration, console
        self.influx_url = influx_url
        self.db = data / SQLITE_FILE
        self.jobs = data / "jobs.json"
        self.procs = Procs(data / "logs")
        self.day = demo_day.Day(duration)
        self.nodes: list[NodeRunner] = []
        self.interrupted = False
        self.broker_port = 0
        self.intrusion: dict | None = None

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def start(self) -> None:
        mt = metrotrace_command()
        store = ["--data-dir", str(self.data)]
        if port_in_use(self.port):
            raise DemoError(f"--port {self.port}: already in use; choose another")
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "metrotrace"
        try:
            build = firmware_build(cache)
            hostnode.micropython()
        except hostnode.ToolMissing as err:
            raise DemoError(str(err)) from None
        self.say(f"firmware compiled with mpy-cross as for a board ({build.name})")
        broker, kind = start_broker(self.procs, self.data / "broker",
                                    os.environ.get("METROTRACE_DEMO_BROKER", "mosquitto"))
        self.say(f"broker: {kind} on 127.0.0.1:{broker}")
        self.broker_port = broker
        gateway_keys, node_keys, configs = {}, {}, {}
        for gw in GATEWAYS:
            plans = [p for p in NODES if p.gateway == gw.id]
            runners = [NodeRunner(p, self.data / "nodes" / p.hex) for p in plans]
            folder = self.data / "gateways" / gw.id
            configs[gw.id] = cfg = _gateway_toml(gw, folder, broker, [r.port for r in runners])
            keys = json.loads(_cli("gateway", "keygen", "--config", str(cfg)))["keys"]
            gateway_keys[gw.id] = keys[0]["public"]
            for r in runners:
                out = folder / f"board-{r.plan.hex}.json"
                _cli("gateway", "provision-node", "--config", str(cfg), "--node", r.plan.hex,
                     "--out", str(out))
                node_keys[r.plan.hex] = json.loads(out.read_text())["key"]
                r.set_key(bytes.fromhex(node_keys[r.plan.hex]))
            self.nodes += runners
        now = int(time.time() * 1000)
        reg = self.data / "registry.json"
        reg.write_text(json.dumps(registry(gateway_keys, node_keys, now - 200 * DAY_MS,
                                           now + 165 * DAY_MS), indent=1))
        _cli("registry", "load", str(reg), *store)
        self._capture_supply(now)
        self.say(f"registry loaded: 2 sites, 2 gateways, {len(NODES)} nodes, 5 instruments")
        settings = drift_settings()
        drift.write(self.data / drift.FILE, settings)
        self.say(f"drift settings in {drift.FILE} (for the jobs, the dashboard and the "
                 f"summary): checks have a known sigma of "
                 f"{next(iter(settings.check_sigma.values()))} g, zero readings a baseline "
                 f"of {settings.params.baseline}")
        influx = ["--influx-url", self.influx_url] if self.influx_url else []
        worker = self.procs.start("server-worker", [*mt, "server", "run", *store, "--broker",
                                                    f"127.0.0.1:{broker}", "--client-id",
                                                    "demo-worker-1", "--monitor-every", "0",
                                                    *influx], order=40)  # demo_jobs monitors
        api = self.procs.start("server-api", [*mt, "server", "api", *store, "--port",
                                              str(self.port)], order=40)
        self.procs.start("server-jobs", [sys.executable, "-m", "metrotrace.tools.demo_jobs",
                                         *store, "--every", "2"], order=40)
        wait_server_online(broker, 30, worker.popen)
        for gw in GATEWAYS:
            self.procs.start(f"gateway-{gw.id}", [*mt, "gateway", "run", "--config",
                                                  str(configs[gw.id])],
                             order=30, stop_signal=signal.SIGINT)
        for node in self.nodes:
            node.start(self.procs, build)
        wait_port(self.port, 30, api.popen)
        self.say(f"server: ingest worker, drift engine every 2 s, API and dashboard at "
                 f"http://127.0.0.1:{self.port}/")
        self._wait_jobs()
        for node in self.nodes:
            if not node.ready.wait(30):
                raise DemoError(f"node {node.plan.hex} did not boot: see "
                                f"{self.procs.log_dir}/node-{node.plan.hex}.log")
        self.say(f"{len(self.nodes)} nodes booted under MicroPython, each on its gateway's pty")
        self._wait_clocks()

    def _wait_clocks(self, timeout: float = 30.0) -> None:
        """Until every node has recorded its clock being set over the link (a `clock_set`
        event): a record made before carries time since boot (tq 0), which a trace would
        place in 1970. The boot's own records (power-up, first zero) are made before."""
        deadline = time.monotonic() + timeout
        late: list[str] = []
        while time.monotonic() < deadline and not self.day.stop.is_set():
            late = [n.plan.hex for n in self.nodes if not n.events["clock_set"]]
            if not late:
                self.say("every node's clock set over its link (records carry UTC)")
                return
            time.sleep(0.2)
        if late:
            self.say(f"[yellow]no clock set on {', '.join(late)} yet: their records carry "
                     f"time since boot[/yellow]")

    def _capture_supply(self, now: int) -> None:
        import sqlite3

        from metrotrace.server.trace.store import TraceStore

        trace = TraceStore(sqlite3.connect(self.db, timeout=30))
        trace.migrate()
        net = supply(now)
        trace.capture(net.events, now)
        trace.conn.close()
        self.say(f"supply network: {len(net.events)} EPCIS events upstream "
                 f"(4 lots to the market, 1 diesel batch to the station, "
                 f"{net.background_lots} more lots elsewhere)")

    def _wait_jobs(self, timeout: float = 300.0) -> None:
        """Until the server's jobs have made a first pass: the first run on a machine
        compiles the drift engine's kernels (numba), and the day should not start with a
        server that cannot look at it yet."""
        began = time.monotonic()
        told = False
        jobs = next(p for p in self.procs.items if p.name == "server-jobs")
        while demo_summary.jobs_pass_started(self.jobs) == 0 and not self.day.stop.is_set():
            if jobs.popen.poll() is not None:
                raise DemoError(f"server-jobs stopped (see {self.procs.log_dir})")
            if time.monotonic() - began > timeout:
                raise DemoError(f"the server's jobs made no pass in {timeout:.0f} s (see "
                                f"{self.procs.log_dir}/server-jobs.log)")
            if not told and time.monotonic() - began > 3:
                self.say("the drift engine compiles its kernels (numba; the first run on "
                         "this machine only)...")
                told = True
            time.sleep(0.3)
        if told:
            self.say(f"drift engine ready ({time.monotonic() - began:.0f} s)")

    def _figures(self) -> tuple[dict, int]:
        made = sum(sum(n.kinds.values()) for n in self.nodes)
        return demo_summary.live(self.db, self.jobs), made

    def _progress(self):
        figures, made = self._figures()
        return demo_summary.progress(figures, made, self.day)

    def _intrude(self) -> None:
        """The intruder's one go (in a thread: publishing must not hold up the display)."""
        try:
            sent = demo_intruder.attack(self.db, self.broker_port)
        except Exception as err:  # noqa: BLE001 - the demo goes on; the summary says so
            sent = {"error": f"{type(err).__name__}: {err}"}
        self.intrusion = sent
        if sent is None:
            return
        if "error" in sent:
            self.say(f"[red]the intruder could not publish: {sent['error']}")
        else:
            self.say(f"[bold]intruder[/bold] on the market's network: replays a batch "
                     f"market-1 sent, then a copy with sale seq {sent['record_seq']} made "
                     f"{demo_intruder.EXTRA_G} g heavier; the server must refuse both "
                     f"(Rejects page)")

    def run_day(self) -> None:
        self.say(f"market day starts ({self.duration:.0f} s). Drift is accelerated: MKT1-S2's "
                 f"load cell gains {self.day.drift_ppm_per_s:.0f} ppm of sensitivity a second "
                 f"from {self.day.drift_start:.0f} s on (a real one takes months to do this)")
        self.day.started = time.monotonic()
        threads = demo_day.start(self.day, self.nodes)
        intruder: threading.Thread | None = None
        live = Live(self._progress(), console=self.console, refresh_per_second=2) \
            if self.console.is_terminal else None
        next_line = time.monotonic() + STATUS_EVERY_S
        with live if live is not None else contextlib.nullcontext():
            while self.day.elapsed() < self.duration and not self.day.stop.is_set():
                dead = [name for name, _ in self.procs.died()]
                if dead:
                    raise DemoError(f"stopped unexpectedly: {', '.join(dead)} (see "
                                    f"{self.procs.log_dir})")
                if self.day.elapsed() >= INTRUDER_AT * self.duration and self.intrusion \
                        is None and (intruder is None or not intruder.is_alive()):
                    intruder = threading.Thread(target=self._intrude, daemon=True)
                    intruder.start()
                time.sleep(0.5)
                if live is not None:
                    live.update(self._progress())
                elif time.monotonic() >= next_line:  # piped (CI, `| tee`): a line at a time
                    next_line += STATUS_EVERY_S
                    figures, made = self._figures()
                    self.say(demo_summary.status_line(figures, made, self.day))
        if intruder is not None:
            intruder.join(15)
        self.day.stop.set()
        for t in threads:
            t.join(10)
        self.say("market day over: letting the last records reach the server")
        self._settle()

    def _settle(self, timeout: float = 10.0) -> None:
        """Until the server has stored what the nodes made during the day, and the jobs
        have made one pass over it (trace rules, drift engine)."""
        made = sum(sum(n.kinds.values()) for n in self.nodes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if demo_summary.live(self.db, self.jobs)["stored"] >= made:
                break
            time.sleep(0.3)
        stored_ms = time.time_ns() // 1_000_000
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and demo_summary.jobs_pass_started(self.jobs) \
                <= stored_ms:
            time.sleep(0.3)

    def stop(self) -> dict:
        self.day.stop.set()
        began = time.monotonic()
        killed = self.procs.stop()
        self.say(f"stopped {len(self.procs.items)} processes in {time.monotonic() - began:.1f} s"
                 + (f" (killed: {', '.join(killed)})" if killed else ""))
        for node in self.nodes:
            node.close()
        return {"killed": killed, "left": self.procs.leftovers(),
                "died": [name for name, code in self.procs.died() if code not in (0, -15, -2)]}


def run(duration: float = 90.0, port: int = 8000, data_dir: Path | None = None,
        browser: bool = True, console: Console | None = None,
        influx_url: str | None = None) -> dict:
    console = console or Console()
    data = prepare(data_dir)
    demo = Demo(data, port, duration, console, influx_url)
    interrupt = threading.Event()

    def on_sigint(*_):
        if interrupt.is_set():  # a second Ctrl-C: stop waiting for anything
            raise KeyboardInterrupt
        interrupt.set()
        demo.interrupted = True
        demo.day.stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
        signal.signal(signal.SIGTERM, on_sigint)
    summary: dict = {}
    try:
        demo.start()
        if browser and not interrupt.is_set():
            _open_browser(f"http://127.0.0.1:{port}/", console)
        if not interrupt.is_set():
            demo.run_day()
        nodes = {n.plan.hex: {"title": n.plan.title, "kinds": dict(n.kinds),
                              "events": dict(n.events), "refused": n.refused[-3:]}
                 for n in demo.nodes}
        day = {"duration": duration, "elapsed": round(demo.day.elapsed(), 1),
               "interrupted": demo.interrupted, "done": dict(demo.day.done),
               "missed": dict(demo.day.missed), "checks_refused": demo.day.checks_refused,
               "tampered_at": demo.day.tampered_at}
        summary = demo_summary.collect(demo.db, demo.procs.log_dir, nodes, day)
    finally:
        stopped = demo.stop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if summary:
        summary["gateways"] = {gw.id: demo_summary.gateway_counters(
            demo.procs.log_dir / f"gateway-{gw.id}.log") for gw in GATEWAYS}
        summary["processes"] = stopped
        summary["intruder"] = demo.intrusion
        summary["data_dir"] = str(data)
        summary["dashboard"] = f"http://127.0.0.1:{port}/"
        (data / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        demo_summary.render(summary, console)
        console.print(f"processes left running: {len(stopped['left'])}"
                      + (f" ({', '.join(stopped['left'])})" if stopped["left"] else "")
                      + f"; everything is in {data} (summary.json, logs/); browse it again "
                        f"with `metrotrace server api --data-dir {data}`")
    return summary
