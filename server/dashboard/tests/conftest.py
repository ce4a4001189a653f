"""Fixtures for the dashboard's browser tests: the sample store (dashboard/sample.py), the
real API server (`metrotrace server api`, uvicorn) on a free port, Debian's Chromium driven
by Playwright, and screenshots.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from metrotrace.server.dashboard.sample import seed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"API server on port {port} did not answer /health")


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory):
    data = tmp_path_factory.mktemp("dashboard-data")
    truth = seed(data / "metrotrace.sqlite3")
    return data, truth


@pytest.fixture(scope="session")
def server(seeded_store, tmp_path_factory):
    """`metrotrace server api` (uvicorn) on a free port over the seeded store."""
    data, truth = seeded_store
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard-log") / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "metrotrace.tools.cli", "server", "api",
                                 "--data-dir", str(data), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(port, proc)
        yield f"http://127.0.0.1:{port}", truth
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory):
    """shots(page, name): a PNG under the pytest tmp dir, and in $METROTRACE_SCREENSHOTS."""
    folder = tmp_path_factory.mktemp("screenshots")
    extra = os.environ.get("METROTRACE_SCREENSHOTS")

    def take(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    return take
