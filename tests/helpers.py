"""Small helpers shared by tests (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""

    def _open() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((host, port)) == 0

    wait_for(_open, timeout)


def triage_env(**extra: str) -> dict[str, str]:
    """The environment for a ``triage`` subprocess: no TRIAGE_* leaks from the test runner's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(extra)
    return env


def run_triage(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m triage ARGS`` and return the completed process (output captured as text)."""
    return subprocess.run(
        [sys.executable, "-m", "triage", *args],
        env=env if env is not None else triage_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def start_triage(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m triage ARGS`` in the background (output to ``log`` or discarded)."""
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "triage", *args],
        env=env if env is not None else triage_env(),
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
