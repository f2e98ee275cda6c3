"""Child processes the tests run (Prometheus, Alertmanager, the exporter's CLI): found, started
with their output in a log file, awaited until ready and stopped, each wait bounded."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pytest

SHUTDOWN_SECONDS = 10.0
POLL_SECONDS = 0.05


def binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run scripts/bootstrap.sh"
    return path


def spawn(
    command: Sequence[str | Path], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """The command started with stdout and stderr in the log; env None inherits ours."""
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(
    process: subprocess.Popen[bytes], url: str, log_path: Path, name: str, timeout: float
) -> None:
    """Returns once the url answers 200; fails the test, with the log, if the process exits
    first or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            pytest.fail(f"{name} not ready after {timeout}s:\n{log_path.read_text()}")
        time.sleep(POLL_SECONDS)


def stop(process: subprocess.Popen[bytes], timeout: float = SHUTDOWN_SECONDS) -> int | None:
    """SIGTERM, a bounded wait, then SIGKILL: the exit code, or None if SIGTERM was ignored."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def stop_cleanly(
    process: subprocess.Popen[bytes],
    log_path: Path,
    name: str,
    timeout: float = SHUTDOWN_SECONDS,
) -> None:
    """Stops the process and fails the test, with the log, unless SIGTERM made it exit 0."""
    returncode = stop(process, timeout)
    if returncode is None:
        pytest.fail(f"{name} ignored SIGTERM:\n{log_path.read_text()}")
    assert returncode == 0, log_path.read_text()
