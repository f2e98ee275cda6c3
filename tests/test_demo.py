"""`promotion-exporter demo` as a user runs it: a subprocess that serves the page and live
metrics, tells a healthy promotion, then stops at the flux2#3933 node; with Prometheus and
Alertmanager installed, that node becomes an alert that reaches Alertmanager's sink."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from exporter import demo_alerting
from exporter.config import parse_duration
from exporter.simulator.distribution import free_port

ALERT = "PromotionValidationNotDispatched"
# Past the rule's for:, a few 2s evaluations, Alertmanager's 5s group_wait, and slack for
# a loaded 2-core machine.
DELIVERY_SECONDS = parse_duration(demo_alerting.DEMO_FOR) + 30
STORY_SECONDS = 90.0


def _demo_command(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "exporter",
        "demo",
        "--step-seconds",
        "0.3",
        f"--web.listen-address=127.0.0.1:{port}",
        *extra,
    ]


def test_demo_serves_metrics_and_ends_stuck_at_the_dispatch_node() -> None:
    port = free_port()
    demo = subprocess.Popen(
        _demo_command(port, "--exit-when-stuck", "--no-alerting"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = ""
    deadline = time.monotonic() + 60
    # Each source publishes as it finishes: wait for the registry's too.
    wanted = ("promotion_version_info", 'promotion_source_up{kind="registry"')
    while not all(w in metrics for w in wanted) and time.monotonic() < deadline:
        try:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.TransportError:
            time.sleep(0.2)
    output, _ = demo.communicate(timeout=120)
    assert 'promotion_source_up{kind="registry"' in metrics, output
    assert f"pipeline page: http://127.0.0.1:{port}/\n" in output
    assert f"metrics:       http://127.0.0.1:{port}/metrics\n" in output
    assert "skipped Prometheus and Alertmanager: --no-alerting" in output
    healthy, _, stuck = output.partition("=== Now the Flux githubdispatch provider")
    assert "verdict: healthy" in healthy
    assert "stuck here: PromotionValidationNotDispatched" in stuck
    assert "verdict: stuck" in stuck
    assert demo.returncode == 1


def test_without_the_binaries_the_demo_says_what_it_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binaries, reason = demo_alerting.find_binaries()
    assert binaries is None
    assert reason == "prometheus and prometheus-alertmanager not on PATH (make demo installs them)"


# --- With Prometheus and Alertmanager ------------------------------------------------------


@dataclass
class _Output:
    """The demo's stdout, line by line, each with when it arrived."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self, stream: Iterator[str]) -> None:
        for line in stream:
            with self.changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> float:
        """When the first line containing `text` arrived; fails the test after `timeout`."""
        with self.changed:
            found = self.changed.wait_for(lambda: self._when(text) is not None, timeout)
            if not found:
                pytest.fail(f"no {text!r} within {timeout}s:\n{self.text()}")
            when = self._when(text)
            assert when is not None
            return when

    def _when(self, text: str) -> float | None:
        return next((at for at, line in self.lines if text in line), None)

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def _refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.ConnectError:
        return True
    return False


@pytest.mark.e2e
def test_demo_alert_reaches_alertmanager_and_ctrl_c_stops_every_child() -> None:
    if demo_alerting.find_binaries()[0] is None:
        pytest.fail(f"{demo_alerting.find_binaries()[1]}: run scripts/bootstrap.sh")
    port, prometheus, alertmanager = free_port(), free_port(), free_port()
    demo = subprocess.Popen(
        _demo_command(
            port,
            f"--prometheus.listen-address=127.0.0.1:{prometheus}",
            f"--alertmanager.listen-address=127.0.0.1:{alertmanager}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = _Output()
    assert demo.stdout is not None
    reader = threading.Thread(target=output.read, args=(demo.stdout,), daemon=True)
    reader.start()
    try:
        output.wait_for(f"alerts:        http://127.0.0.1:{prometheus}/alerts", 60)
        output.wait_for(f"pipeline page: http://127.0.0.1:{port}/", 5)
        stuck_at = output.wait_for("verdict: stuck", STORY_SECONDS)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
        assert 'data-node="validation_dispatched" data-status="failing"' in page
        pending = output.wait_for(f"prometheus: {ALERT} pending", 30)
        firing = output.wait_for(f"prometheus: {ALERT} firing", DELIVERY_SECONDS)
        delivered = output.wait_for(f"alertmanager -> ticket: {ALERT} firing", DELIVERY_SECONDS)
        assert pending < firing < delivered
        assert delivered - stuck_at < DELIVERY_SECONDS, output.text()
        alerts = httpx.get(f"http://127.0.0.1:{alertmanager}/api/v2/alerts", timeout=5).json()
        assert ALERT in {alert["labels"]["alertname"] for alert in alerts}
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            returncode = demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
        reader.join(timeout=5)
    assert returncode == 0, output.text()
    assert _refused(prometheus) and _refused(alertmanager) and _refused(port)
