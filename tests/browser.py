"""Headless Chromium, driven over the Chrome DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read commands from fd 3 and write replies to fd 4,
each message JSON ended by a NUL byte, so the tests need no WebSocket client and open no
debugging port. One browser per test module; each page gets its own target.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
REPLY_SECONDS = 30.0


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, log_path: Path) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("chromium is not installed: run scripts/bootstrap.sh as root")
        self.profile = Path(tempfile.mkdtemp(prefix="promotion-chromium-"))
        chrome_reads, self._out = os.pipe()
        self._in, chrome_writes = os.pipe()
        # Chromium wants exactly fds 3 and 4. bash (dash takes one-digit fds only) moves the
        # pipe ends there from fds above 4, so that neither move can clobber the other.
        reads = fcntl.fcntl(chrome_reads, fcntl.F_DUPFD_CLOEXEC, 5)
        writes = fcntl.fcntl(chrome_writes, fcntl.F_DUPFD_CLOEXEC, 5)
        command = [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{reads} 4>&{writes}', *command],
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(reads, writes),
            )
        for fd in (chrome_reads, chrome_writes, reads, writes):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + REPLY_SECONDS
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._in], [], [], max(0.0, left))
            if not ready:
                raise BrowserError(f"no reply from Chromium within {REPLY_SECONDS}s")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def open(self, url: str, width: int, height: int = 900) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        page.call("Page.navigate", {"url": url})
        page.wait_for("document.readyState === 'complete' && document.body !== null")
        return page

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._out)
            os.close(self._in)
            shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.browser.call(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout}s: {expression}")
            time.sleep(0.05)

    def screenshot(self, path: Path) -> bytes:
        """The whole page, not only the viewport, as PNG."""
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        png = base64.b64decode(data["data"])
        path.write_bytes(png)
        return png
