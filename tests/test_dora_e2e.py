"""The DORA rules against a simulated week, in a real Prometheus.

A week cannot pass through scrapes, so it is played in compressed time instead: the real
poller polls the simulated world (real clients, fake servers on 127.0.0.1) every 10 simulated
minutes, the real collector renders each poll, and those expositions, stamped with their
simulated times, are backfilled with `promtool tsdb create-blocks-from openmetrics`, just as
Prometheus would have stored them. The events group is then backfilled from that history with
`promtool tsdb create-blocks-from rules` against a first Prometheus; a second one, with the
whole rules pack loaded, evaluates the summary group at the end of the week. Its values must
match what the simulator did, within one poll interval.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import dashboards, dora, rules
from exporter.collector import PromotionCollector
from exporter.poller import Poller
from exporter.simulator.distribution import free_port
from exporter.simulator.lab import Lab
from exporter.simulator.week import DAY, Week, WeekRecord
from tests.processes import binary, spawn, stop_cleanly, wait_ready

pytestmark = pytest.mark.e2e

POLL_SECONDS = 600.0
# Prometheus scrapes more often than the exporter polls; between polls it reads the same state.
SCRAPE_OFFSETS = (0.0, 200.0, 400.0)
STARTUP_SECONDS = 30.0
PIPELINE = "platform"


@dataclass
class _Exposition:
    """Every family's samples over the week, in time order, as OpenMetrics lines."""

    types: dict[str, str]
    lines: dict[str, list[str]]

    def add(self, text: str, at: float, until: float) -> None:
        """One poll's exposition, as each scrape before the next poll (and `until`) read it."""
        scrapes = [at + offset for offset in SCRAPE_OFFSETS if at + offset <= until]
        for family in text_string_to_metric_families(text):
            self.types.setdefault(family.name, family.type)
            for sample in family.samples:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
                self.lines[family.name] += [
                    f"{sample.name}{{{labels}}} {sample.value!r} {scrape:.3f}" for scrape in scrapes
                ]

    def openmetrics(self) -> str:
        out = []
        for name, type_ in self.types.items():
            out.append(f"# TYPE {name} {type_}")
            # One series' samples must come in time order; they were added in time order.
            out += sorted(self.lines[name], key=lambda line: float(line.rsplit(" ", 1)[1]))
        return "\n".join([*out, "# EOF", ""])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class WeekWorld:
    record: WeekRecord
    url: str
    start: float
    end: float

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10.0)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def value(self, expr: str, at: float | None = None) -> float:
        """Now by default: the summary group's series exist from this Prometheus's start."""
        found = self.query(expr, at)
        assert len(found) == 1, f"{expr}: {found}"
        return float(found[0]["value"][1])

    def query_range(self, expr: str, hours: float) -> list[dict[str, Any]]:
        """The last hours up to now, now included: the summary series began a moment ago."""
        end = time.time()
        params = {"query": expr, "start": end - hours * 3600, "end": end, "step": 60}
        response = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=30.0)
        response.raise_for_status()
        return response.json()["data"]["result"]


def _play(root: Path) -> tuple[WeekRecord, float, float]:
    """The week up to now; every sample at or before now, so that what the rules record at
    Prometheus's now is not older than the blocks it loaded (the head would refuse it)."""
    end = float(int(time.time()))
    start = end - 7 * DAY + 2 * 3600.0
    exposition = _Exposition({}, defaultdict(list))
    with Lab(start=start, interval="10m") as lab:
        sim = lab.sim
        assert sim is not None
        sim.install_cluster_objects()
        sim.release()  # what live ran before the week: no deployment of the week
        poller = Poller(lab.config(), clock=lab.clock)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(PromotionCollector(poller))

        def observe() -> None:
            poller.poll_once()
            exposition.add(generate_latest(registry).decode(), sim.now, end)

        try:
            week = Week(sim, observe, POLL_SECONDS)
            record = week.play(end)
        finally:
            poller.close()
    (root / "week.om").write_text(exposition.openmetrics())
    return record, start, end


def _run(*args: str | Path) -> None:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{args[0]} {args[1:3]}:\n{result.stdout}{result.stderr}"


def _prometheus(root: Path, name: str, rule_file: Path | None) -> tuple[Any, str, Path]:
    config: dict[str, Any] = {"global": {"evaluation_interval": "1s"}}
    if rule_file is not None:
        config["rule_files"] = [str(rule_file)]
    (root / f"{name}.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    log = root / f"{name}.log"
    process = spawn(
        [
            binary("prometheus"),
            f"--config.file={root / f'{name}.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address={address}",
            "--storage.tsdb.retention.time=60d",
        ],
        log,
    )
    wait_ready(process, f"http://{address}/-/ready", log, name, STARTUP_SECONDS)
    return process, f"http://{address}", log


def _groups_file(root: Path, names: set[str]) -> Path:
    text = rules.render_files(rules.RuleOptions())[rules.PLAIN_RULES_FILE]
    groups = [g for g in yaml.safe_load(text)["groups"] if g["name"] in names]
    path = root / f"{'-'.join(sorted(names))}.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def _await_summary(url: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        response = httpx.get(f"{url}/api/v1/rules", timeout=5.0)
        groups = response.json()["data"]["groups"]
        summary = next(g for g in groups if g["name"] == dora.SUMMARY_GROUP)
        if all(rule["health"] == "ok" for rule in summary["rules"]):
            return
        assert time.monotonic() < deadline, summary
        time.sleep(0.2)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeekWorld]:
    root = tmp_path_factory.mktemp("dora")
    record, start, end = _play(root)
    promtool = binary("promtool")
    _run(promtool, "tsdb", "create-blocks-from", "openmetrics", root / "week.om", root / "data")
    process, url, log = _prometheus(root, "history", None)
    try:
        _run(
            promtool,
            "tsdb",
            "create-blocks-from",
            "rules",
            f"--start={int(start)}",
            f"--end={int(end)}",
            f"--url={url}",
            f"--output-dir={root / 'events'}",
            _groups_file(root, {dora.EVENTS_GROUP}),
        )
    finally:
        stop_cleanly(process, log, "history")
    for block in (root / "events").iterdir():
        shutil.move(block, root / "data" / block.name)
    pack = root / "promotion.rules.yml"
    pack.write_text(rules.render_files(rules.RuleOptions())[rules.PLAIN_RULES_FILE])
    process, url, log = _prometheus(root, "rules", pack)
    try:
        _await_summary(url)
        yield WeekWorld(record, url, start, end)
    finally:
        stop_cleanly(process, log, "rules")


# --- What the simulator did ---------------------------------------------------------------


def _mean(values: list[float]) -> float:
    assert values
    return sum(values) / len(values)


def _first_applied(record: WeekRecord, stage: str) -> dict[str, float]:
    first: dict[str, float] = {}
    for deployment in getattr(record, stage):
        first.setdefault(deployment.build.digest, deployment.at)
    return first


def expected_lead_times(record: WeekRecord) -> dict[str, float]:
    integration = _first_applied(record, "integration")
    live = [d for d in record.live if not d.rollback]
    return {
        "commit_to_integration": _mean(
            [d.at - record.committed[d.build.commit] for d in record.integration if not d.rollback]
        ),
        "commit_to_live": _mean([d.at - record.committed[d.build.commit] for d in live]),
        "integration_to_live": _mean([d.at - integration[d.build.digest] for d in live]),
    }


# --- The checks -----------------------------------------------------------------------------


def test_the_week_has_one_bad_release_rolled_back(week: WeekWorld) -> None:
    record = week.record
    assert record.bad is not None
    assert [d.rollback for d in record.live].count(True) == 1
    rollback = next(d for d in record.live if d.rollback)
    assert rollback.at - next(d.at for d in record.live if d.build == record.bad) < 3600
    assert len(record.failures) == 1


def test_deployments_per_day_count_every_live_and_integration_change(week: WeekWorld) -> None:
    record = week.record
    for stage in ("integration", "live"):
        deployments = len(getattr(record, stage))
        for window, days in (("7d", 7), ("30d", 30)):
            expr = f'pipeline_stage:promotion_deployments_per_day:{window}{{stage="{stage}"}}'
            assert week.value(expr) == pytest.approx(deployments / days), (stage, window)


def test_mean_lead_time_per_hop_is_the_simulators(week: WeekWorld) -> None:
    for hop, seconds in expected_lead_times(week.record).items():
        expr = f'pipeline_hop:promotion_lead_time_seconds:mean_7d{{hop="{hop}"}}'
        # Commit dates are whole seconds on GitHub; apply times are the simulator's own.
        assert week.value(expr) == pytest.approx(seconds, abs=1.0), hop


def test_last_lead_time_is_the_final_deployments(week: WeekWorld) -> None:
    record = week.record
    last = record.live[-1]
    expr = 'pipeline_hop:promotion_lead_time_seconds:last{hop="commit_to_live"}'
    # An events series: backfilled up to the end of the week.
    lead = week.value(expr, at=week.end)
    assert lead == pytest.approx(last.at - record.committed[last.build.commit], abs=1)


def test_change_failure_ratio_is_the_one_bad_release(week: WeekWorld) -> None:
    deployments = len(week.record.live)
    for window in ("7d", "30d"):
        expr = f"pipeline:promotion_change_failure_ratio:{window}"
        assert week.value(expr) == pytest.approx(1 / deployments), window


def test_time_to_restore_is_the_rollbacks_within_one_poll(week: WeekWorld) -> None:
    ((failed, restored),) = week.record.failures
    measured = week.value("pipeline:promotion_time_to_restore_seconds:mean_7d")
    assert math.isclose(measured, restored - failed, abs_tol=POLL_SECONDS), measured


def test_every_dora_panel_query_returns_data(week: WeekWorld) -> None:
    """Over the dashboard's last hours, as Grafana draws them: the week's raw and event series
    end with the week, the summary series start when this Prometheus did."""
    queries = dashboards.dora_panel_queries()
    assert len(queries) >= 4
    empty = [
        (title, query)
        for title, query in queries
        if not week.query_range(dashboards.substitute(query, PIPELINE), hours=2)
    ]
    assert not empty
