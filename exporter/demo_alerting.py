"""The demo's alerting: a real Prometheus and a real Alertmanager beside the demo exporter.

Prometheus scrapes the exporter and evaluates the shipped rules, regenerated with a demo-short
`for:` so that an alert fires about a minute after its node fails. Alertmanager is configured
from examples/alertmanager.yml (its routes, grouping and inhibitions), with its webhooks sent
to a sink in this process that prints each notification. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from exporter import rules

EXAMPLE_ALERTMANAGER = Path(__file__).resolve().parents[1] / "examples" / "alertmanager.yml"
DEMO_FOR = "1m"
# Shorter than DEMO_FOR, as the rules require, and a few of the demo's 2s scrapes long.
DEMO_SUPPRESSION_WINDOW = "20s"
SCRAPE_INTERVAL = "2s"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0
WATCH_SECONDS = 1.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class Binaries:
    prometheus: str
    alertmanager: str


def find_binaries() -> tuple[Binaries | None, str]:
    """The two binaries, or None and why the demo goes without them."""
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    missing = [
        name
        for name, path in (("prometheus", prometheus), ("prometheus-alertmanager", alertmanager))
        if path is None
    ]
    if missing:
        return None, f"{' and '.join(missing)} not on PATH (make demo installs them)"
    if not EXAMPLE_ALERTMANAGER.is_file():
        return None, f"{EXAMPLE_ALERTMANAGER} not found: run the demo from a clone"
    assert prometheus is not None and alertmanager is not None
    return Binaries(prometheus, alertmanager), ""


def demo_rules() -> str:
    """The shipped rules with every for: shortened for the demo."""
    options = rules.RuleOptions(for_override=DEMO_FOR, suppression_window=DEMO_SUPPRESSION_WINDOW)
    return rules.render_files(options)[rules.PLAIN_RULES_FILE]


def alertmanager_config(example: dict[str, Any], sink_url: str) -> dict[str, Any]:
    """The example's routes and inhibitions, each receiver's webhook sent to the sink, and
    grouping waits short enough to watch."""
    config: dict[str, Any] = json.loads(json.dumps(example))  # a deep copy
    config["route"].update(group_wait="5s", group_interval="10s")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{sink_url}/{receiver['name']}"
    return config


def prometheus_config(exporter: str, alertmanager: str, rules_file: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            # The job name the shipped rules expect for PromotionExporterDown.
            {"job_name": "promotion-exporter", "static_configs": [{"targets": [exporter]}]}
        ],
    }


class _Sink(ThreadingHTTPServer):
    """Alertmanager's webhook receiver: prints each notification, one line per alert."""

    def __init__(self, say: Say) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.say = say
        self.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SinkHandler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        receiver = self.path.strip("/")
        for alert in payload.get("alerts", []):
            labels = alert.get("labels", {})
            self.server.say(
                f"alertmanager -> {receiver}: {labels.get('alertname')} {alert.get('status')} "
                f"(severity {labels.get('severity')}, pipeline {labels.get('pipeline', '-')})"
            )
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class AlertingStack:
    """Starts Alertmanager, the sink and Prometheus; `stop` ends every one of them."""

    def __init__(
        self,
        binaries: Binaries,
        workdir: Path,
        exporter: str,
        prometheus_address: str,
        alertmanager_address: str,
        say: Say,
    ) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.exporter = exporter
        self.prometheus_address = prometheus_address
        self.alertmanager_address = alertmanager_address
        self.say = say
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sink = _Sink(say)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.prometheus_address}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.alertmanager_address}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._serve(self.sink.serve_forever)
        self._start_alertmanager()
        self._start_prometheus()
        self._wait_ready(f"{self.alertmanager_url}/-/ready", "alertmanager")
        self._wait_ready(f"{self.prometheus_url}/-/ready", "prometheus")
        self._serve(self._watch_prometheus)

    def _serve(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
            )

    def _start_alertmanager(self) -> None:
        example = yaml.safe_load(EXAMPLE_ALERTMANAGER.read_text())
        config = self.workdir / "alertmanager.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(example, self.sink.url)))
        self._spawn(
            "alertmanager",
            [
                self.binaries.alertmanager,
                f"--config.file={config}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address={self.alertmanager_address}",
                "--cluster.listen-address=",  # a single instance: no gossip port
            ],
        )

    def _start_prometheus(self) -> None:
        rules_file = self.workdir / rules.PLAIN_RULES_FILE
        rules_file.write_text(demo_rules())
        config = self.workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(prometheus_config(self.exporter, self.alertmanager_address, rules_file))
        )
        self._spawn(
            "prometheus",
            [
                self.binaries.prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address={self.prometheus_address}",
            ],
        )

    def _wait_ready(self, url: str, name: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.workdir}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {STARTUP_SECONDS}s")

    def _watch_prometheus(self) -> None:
        """Prints each alert's state as Prometheus changes it: pending, firing, resolved."""
        seen: dict[tuple[str, str], str] = {}
        while not self._stop.wait(WATCH_SECONDS):
            try:
                alerts = httpx.get(f"{self.prometheus_url}/api/v1/alerts", timeout=2.0).json()
            except (httpx.HTTPError, ValueError):
                continue
            now: dict[tuple[str, str], str] = {}
            for alert in alerts.get("data", {}).get("alerts", []):
                labels = alert["labels"]
                now[(labels["alertname"], labels.get("pipeline", "-"))] = alert["state"]
            for (name, pipeline), state in sorted(now.items()):
                if seen.get((name, pipeline)) != state:
                    self.say(f"prometheus: {name} {state} (pipeline {pipeline})")
            for name, pipeline in sorted(set(seen) - set(now)):
                self.say(f"prometheus: {name} resolved (pipeline {pipeline})")
            seen = now

    def stop(self) -> None:
        self._stop.set()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sink.shutdown()
        self.sink.server_close()
        for thread in self._threads:
            thread.join(timeout=STOP_SECONDS)
