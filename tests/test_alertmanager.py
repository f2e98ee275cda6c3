"""examples/alertmanager.yml, checked with amtool and run in a real Alertmanager."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from exporter.seed import SYMPTOMS
from exporter.simulator.distribution import free_port
from exporter.trees import TREES
from tests.processes import binary, spawn, stop_cleanly, wait_ready

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "alertmanager.yml"
RULES = REPO / "rules" / "promotion.rules.yml"
HEALTH_ALERTS = {"PromotionSourceDown", "PromotionExporterDown", "PromotionExporterStale"}
STARTUP_SECONDS = 10.0
DELIVERY_SECONDS = 10.0

Labels = dict[str, str]


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("amtool"), *args], capture_output=True, text=True, timeout=30, check=False
    )


def _pipeline_alerts() -> dict[str, str]:
    """Every tree alert and symptom of the rules pack, with its severity."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        rule["alert"]: rule["labels"]["severity"]
        for group in groups
        for rule in group["rules"]
        if "alert" in rule and rule["alert"] not in HEALTH_ALERTS
    }


def test_amtool_accepts_the_example() -> None:
    result = _amtool("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "2 inhibit rules" in result.stdout
    assert "2 receivers" in result.stdout


@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "page"), ("warning", "ticket"), ("info", "ticket")]
)
def test_severity_routes_to_its_receiver(severity: str, receiver: str) -> None:
    result = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={EXAMPLE}",
        f"--verify.receivers={receiver}",
        "alertname=PromotionLagHigh",
        "pipeline=platform",
        f"severity={severity}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_example_groups_by_pipeline_and_posts_to_localhost() -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    assert set(config["route"]["group_by"]) == {"alertname", "pipeline"}
    assert all("group_by" not in route for route in config["route"]["routes"])
    urls = [hook["url"] for receiver in config["receivers"] for hook in receiver["webhook_configs"]]
    assert urls and all(url.startswith("http://127.0.0.1:") for url in urls)


class _SinkServer(ThreadingHTTPServer):
    """Records every webhook notification, by request path (/page or /ticket)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, path: str, payload: dict[str, Any]) -> None:
        with self.changed:
            self.notifications.append((path, payload))
            self.changed.notify_all()

    def received(self, path: str) -> set[tuple[str, str]]:
        """(alertname, pipeline) of every firing alert notified on the path."""
        with self.changed:
            return {
                (alert["labels"]["alertname"], alert["labels"].get("pipeline", ""))
                for sent_to, payload in self.notifications
                if sent_to == path
                for alert in payload["alerts"]
                if alert["status"] == "firing"
            }

    def wait_for(self, path: str, expected: set[tuple[str, str]]) -> set[tuple[str, str]]:
        with self.changed:
            self.changed.wait_for(lambda: expected <= self.received(path), DELIVERY_SECONDS)
        return self.received(path)


class _SinkHandler(BaseHTTPRequestHandler):
    server: _SinkServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.record(self.path, json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Alertmanager's requests are expected; keep the test output quiet."""


@pytest.fixture
def sink() -> Iterator[_SinkServer]:
    server = _SinkServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _fast_routes(route: dict[str, Any]) -> None:
    """The example waits 30s before a group's first notification; the test cannot."""
    route["group_wait"] = "100ms"
    route["group_interval"] = "1s"
    for child in route.get("routes", []):
        _fast_routes(child)


def _test_config(sink_url: str) -> dict[str, Any]:
    config = yaml.safe_load(EXAMPLE.read_text())
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = sink_url + urlsplit(hook["url"]).path
    _fast_routes(config["route"])
    return config


@pytest.fixture
def alertmanager(tmp_path: Path, sink: _SinkServer) -> Iterator[str]:
    """A real Alertmanager, without clustering, running the example against the sink."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(_test_config(sink.url), sort_keys=False))
    address = f"127.0.0.1:{free_port()}"
    url = f"http://{address}"
    log = tmp_path / "alertmanager.log"
    process = spawn(
        [
            binary("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
            "--cluster.listen-address=",
        ],
        log,
    )
    try:
        wait_ready(process, f"{url}/-/ready", log, "alertmanager", STARTUP_SECONDS)
        yield url
    finally:
        stop_cleanly(process, log, "alertmanager")


def _post(url: str, *alerts: Labels) -> None:
    body = [{"labels": labels, "annotations": {"summary": "test."}} for labels in alerts]
    httpx.post(f"{url}/api/v2/alerts", json=body, timeout=5.0).raise_for_status()


def _alert(alertname: str, severity: str, **labels: str) -> Labels:
    return {"alertname": alertname, "severity": severity, **labels}


def _key(labels: Labels) -> tuple[str, ...]:
    return tuple(sorted(labels.items()))


def _statuses(url: str, **params: str) -> dict[tuple[str, ...], dict[str, Any]]:
    response = httpx.get(f"{url}/api/v2/alerts", params=params, timeout=5.0)
    response.raise_for_status()
    return {_key(alert["labels"]): alert for alert in response.json()}


def _poll(url: str, done: Callable[[dict[tuple[str, ...], dict[str, Any]]], bool]) -> dict:
    """Alertmanager's view of the alerts once `done` holds for it, within a bounded wait."""
    deadline = time.monotonic() + DELIVERY_SECONDS
    alerts = _statuses(url)
    while not done(alerts):
        assert time.monotonic() < deadline, f"Alertmanager alerts: {json.dumps(alerts)}"
        time.sleep(0.05)
        alerts = _statuses(url)
    return alerts


def _inhibited(alerts: dict, labels: Labels) -> bool:
    alert = alerts.get(_key(labels))
    return alert is not None and alert["status"]["state"] == "suppressed"


def _active(alerts: dict, labels: Labels) -> bool:
    alert = alerts.get(_key(labels))
    return alert is not None and alert["status"] == {
        "state": "active",
        "inhibitedBy": [],
        "silencedBy": [],
    }


@pytest.mark.e2e
def test_critical_pages_and_warning_opens_a_ticket(alertmanager: str, sink: _SinkServer) -> None:
    _post(
        alertmanager,
        _alert("PromotionLagHigh", "critical", pipeline="platform"),
        _alert("PromotionValidationStale", "warning", pipeline="platform"),
    )
    assert sink.wait_for("/page", {("PromotionLagHigh", "platform")}) == {
        ("PromotionLagHigh", "platform")
    }
    assert sink.wait_for("/ticket", {("PromotionValidationStale", "platform")}) == {
        ("PromotionValidationStale", "platform")
    }
    receivers = {payload["receiver"] for path, payload in sink.notifications if path == "/page"}
    assert receivers == {"page"}


@pytest.mark.e2e
def test_source_down_inhibits_its_pipeline_only(alertmanager: str, sink: _SinkServer) -> None:
    registry_down = _alert(
        "PromotionSourceDown",
        "warning",
        pipeline="platform",
        kind="registry",
        name="ghcr.io/owner/homelab/platform",
    )
    # A second source of the same pipeline: two source alerts must not inhibit each other.
    cluster_down = _alert(
        "PromotionSourceDown", "warning", pipeline="platform", kind="cluster", name="integration"
    )
    platform_stale = _alert(
        "PromotionIntegrationSourceStale",
        "warning",
        pipeline="platform",
        tree="integration",
        node="integration_source_current",
    )
    apps_stale = {**platform_stale, "pipeline": "apps"}
    _post(alertmanager, registry_down, cluster_down, platform_stale, apps_stale)

    alerts = _poll(alertmanager, lambda alerts: _inhibited(alerts, platform_stale))
    sources = {alerts[_key(down)]["fingerprint"] for down in (registry_down, cluster_down)}
    assert set(alerts[_key(platform_stale)]["status"]["inhibitedBy"]) <= sources
    assert alerts[_key(platform_stale)]["status"]["inhibitedBy"]
    assert _active(alerts, apps_stale)
    assert _active(alerts, registry_down)
    assert _active(alerts, cluster_down)
    assert set(_statuses(alertmanager, inhibited="false")) == {
        _key(registry_down),
        _key(cluster_down),
        _key(apps_stale),
    }

    expected = {("PromotionSourceDown", "platform"), ("PromotionIntegrationSourceStale", "apps")}
    assert sink.wait_for("/ticket", expected) == expected


@pytest.mark.e2e
def test_source_down_inhibits_every_tree_alert_and_symptom(alertmanager: str) -> None:
    source_down = _alert(
        "PromotionSourceDown", "warning", pipeline="platform", kind="github", name="owner/homelab"
    )
    targets = [
        _alert(name, severity, pipeline="platform") for name, severity in _pipeline_alerts().items()
    ]
    health = {s.alert for s in SYMPTOMS if s.health}
    tree_nodes = [node for tree in TREES for node in tree.nodes]
    assert len(targets) == len(tree_nodes) + len(SYMPTOMS) - len(health)
    _post(alertmanager, source_down, *targets)

    alerts = _poll(alertmanager, lambda alerts: all(_inhibited(alerts, t) for t in targets))
    fingerprint = alerts[_key(source_down)]["fingerprint"]
    for target in targets:
        assert alerts[_key(target)]["status"]["inhibitedBy"] == [fingerprint], target
    assert _active(alerts, source_down)


@pytest.mark.e2e
def test_exporter_down_inhibits_every_pipeline_but_not_health(alertmanager: str) -> None:
    exporter_down = _alert("PromotionExporterDown", "warning", job="promotion-exporter")
    # A pipeline with no other alert, so that only the exporter can inhibit the targets.
    source_down = _alert(
        "PromotionSourceDown", "warning", pipeline="tools", kind="cluster", name="live"
    )
    targets = [
        _alert(name, severity, pipeline=pipeline)
        for name, severity in _pipeline_alerts().items()
        for pipeline in ("apps", "platform")
    ]
    _post(alertmanager, exporter_down, source_down, *targets)

    alerts = _poll(alertmanager, lambda alerts: all(_inhibited(alerts, t) for t in targets))
    fingerprint = alerts[_key(exporter_down)]["fingerprint"]
    for target in targets:
        assert alerts[_key(target)]["status"]["inhibitedBy"] == [fingerprint], target
    assert _active(alerts, exporter_down)
    assert _active(alerts, source_down)
