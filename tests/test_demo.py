"""`promotion-exporter demo` as a user runs it: a subprocess that serves live metrics, tells a
healthy promotion, then stops at the flux2#3933 node."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from exporter.simulator.distribution import free_port


def test_demo_serves_metrics_and_ends_stuck_at_the_dispatch_node() -> None:
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "demo",
            "--step-seconds",
            "0.3",
            "--exit-when-stuck",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = ""
    deadline = time.monotonic() + 60
    while "promotion_version_info" not in metrics and time.monotonic() < deadline:
        try:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.TransportError:
            time.sleep(0.2)
    output, _ = demo.communicate(timeout=120)
    assert 'promotion_source_up{kind="registry"' in metrics, output
    assert f"metrics: http://127.0.0.1:{port}/metrics" in output
    healthy, _, stuck = output.partition("=== Now the Flux githubdispatch provider")
    assert "verdict: healthy" in healthy
    assert "stuck here: PromotionValidationNotDispatched" in stuck
    assert "verdict: stuck" in stuck
    assert demo.returncode == 1
