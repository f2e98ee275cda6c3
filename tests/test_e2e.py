"""The whole chain as it runs in production, for every scenario at once.

Each scenario gets its own simulated world and its own exporter (in-process, real HTTP). One
real Prometheus scrapes them all and evaluates the shipped rules (every `for:` shortened to 0s),
and one real Alertmanager, configured with the shipped example, posts to a webhook sink here.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter import dashboards, diagnose, rules
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.simulator.distribution import free_port
from exporter.simulator.lab import Lab
from exporter.simulator.scenarios import SCENARIOS, Scenario, play
from exporter.trees import TREES
from tests.processes import binary, spawn, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SETTLE_SECONDS = 60.0
STARTUP_SECONDS = 30.0
TREE_ALERTS = {node.alert for tree in TREES for node in tree.nodes}
DASHBOARD_PIPELINE = "dispatch-dropped"  # the demo's stuck state


@dataclass
class _Exporter:
    scenario: Scenario
    lab: Lab
    poller: Poller
    server: ExporterServer
    stop: threading.Event
    thread: threading.Thread

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.server.stop()
        self.poller.close()
        self.lab.stop()


@dataclass
class _Sink:
    """A webhook receiver: Alertmanager posts here, one list of alerts per receiver path."""

    received: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with sink.lock:
                    sink.received[self.path].extend(
                        a for a in body["alerts"] if a["status"] == "firing"
                    )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return

        return Handler

    def names(self) -> dict[str, set[str]]:
        with self.lock:
            return {
                path: {a["labels"]["alertname"] for a in alerts}
                for path, alerts in self.received.items()
            }

    def alerts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [a for alerts in self.received.values() for a in alerts]


@dataclass
class World:
    exporters: dict[str, _Exporter]
    prometheus: str
    sink: _Sink

    def scenario_of(self, labels: dict[str, str]) -> str | None:
        if "pipeline" in labels:
            return labels["pipeline"]
        if "world" in labels:
            return labels["world"]
        by_instance = {e.instance: name for name, e in self.exporters.items()}
        return by_instance.get(labels.get("instance", ""))

    def firing(self) -> dict[str, set[str]]:
        response = httpx.get(f"{self.prometheus}/api/v1/alerts", timeout=5).json()
        found: dict[str, set[str]] = defaultdict(set)
        for alert in response["data"]["alerts"]:
            if alert["state"] == "firing":
                found[self.scenario_of(alert["labels"]) or "?"].add(alert["labels"]["alertname"])
        return found

    def delivered(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for alert in self.sink.alerts():
            found[self.scenario_of(alert["labels"]) or "?"].add(alert["labels"]["alertname"])
        return found


def _start_exporter(scenario: Scenario, end: float) -> _Exporter:
    lab = Lab(
        pipeline=scenario.name,
        start=end - 3 * 86400,
        # Each world stands still once played, so one poll tells all; frequent polls of 40-odd
        # worlds in one process would starve the scrapes of the GIL.
        interval="15s",
        use_distribution=scenario.name == "healthy",
        flow=scenario.flow,
        provider_type=scenario.provider_type,
        neighbour=scenario.neighbour is not None,
    ).start()
    play(lab.sim, scenario, end, lab.neighbour)
    poller = Poller(lab.config())
    server = ExporterServer(poller, "127.0.0.1:0")
    server.start()
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    return _Exporter(scenario, lab, poller, server, stop, thread)


def _take_down_and_poll(exporters: dict[str, _Exporter]) -> None:
    """Only once every server is bound: a freed port must not be taken by another server,
    and no exporter may poll a source before its scenario took it down."""
    for exporter in exporters.values():
        if exporter.scenario.down:
            exporter.lab.take_down(exporter.scenario.down)
    for exporter in exporters.values():
        exporter.thread.start()


def _alertmanager_config(sink_port: int) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "examples" / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"http://127.0.0.1:{sink_port}/{receiver['name']}"
    return config


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prometheus_binary = binary("prometheus")
    alertmanager_binary = binary("prometheus-alertmanager")
    root = tmp_path_factory.mktemp("e2e")
    end = time.time()
    exporters = {s.name: _start_exporter(s, end) for s in SCENARIOS}
    sink = _Sink()
    sink_server = ThreadingHTTPServer(("127.0.0.1", 0), sink.handler())
    threading.Thread(target=sink_server.serve_forever, daemon=True).start()
    processes = []
    try:
        am_port, prom_port = free_port(), free_port()
        (root / "alertmanager.yml").write_text(
            yaml.safe_dump(_alertmanager_config(sink_server.server_address[1]))
        )
        alertmanager = spawn(
            [
                alertmanager_binary,
                f"--config.file={root / 'alertmanager.yml'}",
                f"--storage.path={root / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            root / "alertmanager.log",
        )
        processes.append(alertmanager)
        rule_text = rules.render_files(rules.RuleOptions(for_override="0s"))
        (root / "rules.yml").write_text(rule_text[rules.PLAIN_RULES_FILE])
        (root / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    # 40-odd exporters share this one Python process and its GIL.
                    "global": {"scrape_interval": "2s", "evaluation_interval": "1s"},
                    "rule_files": [str(root / "rules.yml")],
                    "alerting": {
                        "alertmanagers": [
                            {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}
                        ]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "promotion-exporter",
                            # Each world is its own deployment, told apart by a target
                            # label as environments are: the rules aggregate away only the
                            # replica labels (instance, pod).
                            "static_configs": [
                                {"targets": [e.instance], "labels": {"world": name}}
                                for name, e in exporters.items()
                            ],
                        }
                    ],
                }
            )
        )
        prometheus = spawn(
            [
                prometheus_binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            root / "prometheus.log",
        )
        processes.append(prometheus)
        wait_ready(
            alertmanager,
            f"http://127.0.0.1:{am_port}/-/ready",
            root / "alertmanager.log",
            "alertmanager",
            STARTUP_SECONDS,
        )
        wait_ready(
            prometheus,
            f"http://127.0.0.1:{prom_port}/-/ready",
            root / "prometheus.log",
            "prometheus",
            STARTUP_SECONDS,
        )
        _take_down_and_poll(exporters)
        yield World(exporters, f"http://127.0.0.1:{prom_port}", sink)
    finally:
        for process in processes:
            stop(process)
        sink_server.shutdown()
        for exporter in exporters.values():
            exporter.close()


def _expected_firing() -> dict[str, set[str]]:
    expected = {s.name: set(s.alerts) for s in SCENARIOS if s.alerts}
    # A neighbour pipeline's alerts carry its own pipeline label (Lab.neighbour_pipeline).
    expected |= {f"{s.name}-apps": set(s.neighbour_alerts) for s in SCENARIOS if s.neighbour_alerts}
    return expected


def _expected_delivered() -> dict[str, set[str]]:
    expected = {s.name: set(s.alerts - s.inhibited) for s in SCENARIOS if s.alerts - s.inhibited}
    expected |= {f"{s.name}-apps": set(s.neighbour_alerts) for s in SCENARIOS if s.neighbour_alerts}
    return expected


def _settle(observe: Callable[[], dict[str, set[str]]], expected: dict[str, set[str]]) -> None:
    """Wait until what is observed equals what is expected, then show any difference."""
    deadline = time.monotonic() + SETTLE_SECONDS
    seen: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        seen = {k: v for k, v in observe().items() if v}
        if seen == expected:
            return
        time.sleep(0.5)
    assert seen == expected


def test_prometheus_fires_exactly_each_scenarios_alerts(world: World) -> None:
    _settle(world.firing, _expected_firing())


def test_alertmanager_delivers_them_with_routing_and_inhibition(world: World) -> None:
    _settle(world.delivered, _expected_delivered())
    time.sleep(3)  # an inhibited alert would have arrived by now
    assert {k: v for k, v in world.delivered().items() if v} == _expected_delivered()
    for alert in world.sink.alerts():
        critical = alert["labels"]["severity"] == "critical"
        assert (alert in world.sink.received["/page"]) == critical


def test_cause_alerts_are_the_nodes_diagnose_stops_at(world: World) -> None:
    firing = world.firing()
    for name, exporter in world.exporters.items():
        state = exporter.poller.state
        assert state is not None
        text, _code = diagnose.render(exporter.poller.config, state)
        stuck = {
            line.split("stuck here: ", 1)[1].split()[0]
            for line in text.splitlines()
            if "stuck here: " in line
        }
        firing_here = firing.get(name, set()) | firing.get(f"{name}-apps", set())
        assert stuck == firing_here & TREE_ALERTS, name


def _empty_panels(world: World) -> list[tuple[str, str]]:
    empty = []
    for title, query in dashboards.panel_queries():
        promql = dashboards.substitute(query, DASHBOARD_PIPELINE)
        result = httpx.get(
            f"{world.prometheus}/api/v1/query", params={"query": promql}, timeout=5
        ).json()
        assert result["status"] == "success", (title, promql, result)
        if not result["data"]["result"]:
            empty.append((title, promql))
    return empty


def test_every_dashboard_panel_shows_data(world: World) -> None:
    # Rates need two scrapes: wait for them rather than rely on the tests before this one.
    deadline = time.monotonic() + SETTLE_SECONDS
    empty = _empty_panels(world)
    while empty and time.monotonic() < deadline:
        time.sleep(0.5)
        empty = _empty_panels(world)
    assert not empty


def test_a_dead_exporter_fires_exporter_down(world: World) -> None:
    """Last: it takes one exporter away, which inhibits the rest at Alertmanager."""
    exporter = world.exporters["healthy"]
    exporter.server.stop()
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if "PromotionExporterDown" in world.sink.names().get("/ticket", set()):
            return
        time.sleep(0.5)
    pytest.fail(
        f"PromotionExporterDown never reached Alertmanager's ticket receiver: {world.sink.names()}"
    )
