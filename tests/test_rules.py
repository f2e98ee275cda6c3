"""The shipped rules pack, checked with the real promtool and loaded into a real Prometheus."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.cli import main
from exporter.rules import PLAIN_RULES_FILE, PROMETHEUS_RULE_FILE
from exporter.seed import SYMPTOMS
from exporter.simulator.distribution import free_port
from exporter.trees import TREES
from tests.processes import binary, spawn, stop_cleanly, wait_ready

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = REPO / "rules"
PLAIN_RULES = RULES_DIR / PLAIN_RULES_FILE
PROMETHEUS_RULE = RULES_DIR / PROMETHEUS_RULE_FILE
UNIT_TEST_DIR = REPO / "tests" / "rules"
RUNBOOK = REPO / "docs" / "runbook.md"
METRICS_DOC = REPO / "docs" / "metrics.md"
STARTUP_SECONDS = 15.0

# The contract's alerts, typed out here so that a renamed or dropped alert fails a test; more
# are welcome (the contract says so), so a new tree node needs no edit here.
CONTRACT_ALERTS = frozenset(
    {
        "PromotionExporterStale",
        "PromotionBuildFailing",
        "PromotionArtifactMissing",
        "PromotionIntegrationSemverMismatch",
        "PromotionIntegrationSourceFailing",
        "PromotionIntegrationSourceStale",
        "PromotionIntegrationReconcileFailing",
        "PromotionValidationNotDispatched",
        "PromotionValidationWorkflowFailing",
        "PromotionStableTagMissing",
        "PromotionLiveSemverMismatch",
        "PromotionLivePinned",
        "PromotionStableNotHigher",
        "PromotionLiveSourceFailing",
        "PromotionLiveSourceStale",
        "PromotionLiveReconcileFailing",
        "PromotionLiveHelmReleaseFailing",
        "PromotionLagHigh",
        "PromotionValidationStale",
        "PromotionLivePrerelease",
        "PromotionCanaryCheckFailing",
        "PromotionCanaryFailureRateHigh",
        "PromotionCanaryStale",
        "PromotionExporterDown",
        "PromotionSourceDown",
    }
)
# Severities and for: the contract (and the seed's canary alerts) fix.
CONTRACT_SEVERITIES = {
    "PromotionLagHigh": ("critical", "5m"),
    "PromotionLivePrerelease": ("critical", "5m"),
    "PromotionCanaryCheckFailing": ("critical", "2m"),
    "PromotionCanaryFailureRateHigh": ("warning", None),
    "PromotionLiveHelmReleaseFailing": ("warning", "15m"),
    "PromotionCanaryStale": ("warning", "5m"),
}
# Every alert the shipped rules define, from the trees and the symptom catalogue.
ALERTS = frozenset(
    {node.alert for tree in TREES for node in tree.nodes} | {s.alert for s in SYMPTOMS}
)
UNIT_TEST_FILES = {
    "promotion-integration-tree": "integration-tree.test.yml",
    "promotion-live-tree": "live-tree.test.yml",
    "promotion-symptoms": "symptoms.test.yml",
    "promotion-health": "health.test.yml",
}
# The recording groups share their test files: the week's events, and the 30d windows.
DORA_TEST_FILES = ("dora-7d.test.yml", "dora-30d.test.yml")
RECORDING_GROUPS = {"promotion-dora-events", "promotion-dora"}
SEVERITIES = {"critical", "warning", "info"}
# Series Prometheus itself writes; the exporter does not expose them.
PROMETHEUS_SERIES = {"up"}
PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alerts(groups: list[dict]) -> list[dict]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _records(groups: list[dict]) -> list[dict]:
    return [rule for group in groups for rule in group["rules"] if "record" in rule]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {} or a by/on/... list), durations or strings."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, is_call = match.groups()
        if not is_call and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def documented_metrics() -> set[str]:
    rows = re.findall(r"^\| `([a-z_:][a-z0-9_:]*)` \|", METRICS_DOC.read_text(), re.MULTILINE)
    assert rows, f"no metric table found in {METRICS_DOC}"
    return set(rows)


def runbook_anchors() -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+?)\s*$", RUNBOOK.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def _rule_count() -> int:
    """Every alert and the recording rules the shipped file holds."""
    return len(ALERTS) + len(_records(_load(PLAIN_RULES)["groups"]))


@pytest.fixture(scope="module")
def groups() -> list[dict]:
    return _load(PLAIN_RULES)["groups"]


def test_promtool_checks_the_plain_rule_file() -> None:
    result = _run(binary("promtool"), "check", "rules", str(PLAIN_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {_rule_count()} rules found" in result.stdout


def test_promtool_checks_the_prometheus_rule_spec(tmp_path: Path) -> None:
    document = _load(PROMETHEUS_RULE)
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    spec = tmp_path / "spec.rules.yml"
    spec.write_text(yaml.safe_dump(document["spec"]))
    result = _run(binary("promtool"), "check", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {_rule_count()} rules found" in result.stdout


def test_both_formats_hold_identical_groups(groups: list[dict]) -> None:
    assert _load(PROMETHEUS_RULE)["spec"]["groups"] == groups


@pytest.mark.parametrize("test_file", sorted({*UNIT_TEST_FILES.values(), *DORA_TEST_FILES}))
def test_promtool_unit_tests_pass(test_file: str) -> None:
    result = _run(binary("promtool"), "test", "rules", str(UNIT_TEST_DIR / test_file))
    if result.returncode != 0:
        pytest.fail(f"promtool test rules {test_file}:\n{result.stdout}{result.stderr}")


def test_every_alert_has_unit_tests_on_both_sides(groups: list[dict]) -> None:
    """Each group has its file, every case is named, and every alert is asserted both silent
    and firing."""
    assert sorted(path.name for path in UNIT_TEST_DIR.glob("*.test.yml")) == sorted(
        {*UNIT_TEST_FILES.values(), *DORA_TEST_FILES}
    )
    assert {group["name"] for group in groups} == set(UNIT_TEST_FILES) | RECORDING_GROUPS
    for group in (g for g in groups if g["name"] in UNIT_TEST_FILES):
        cases = _load(UNIT_TEST_DIR / UNIT_TEST_FILES[group["name"]])["tests"]
        assert all(case.get("name") for case in cases), f"unnamed case in {group['name']}"
        checks = [check for case in cases for check in case["alert_rule_test"]]
        for rule in group["rules"]:
            mine = [check for check in checks if check["alertname"] == rule["alert"]]
            assert any(check.get("exp_alerts") for check in mine), f"{rule['alert']} never fires"
            assert any(not check.get("exp_alerts") for check in mine), (
                f"{rule['alert']} is never asserted silent"
            )


def test_every_recording_rule_is_asserted_at_two_times_at_least(groups: list[dict]) -> None:
    """Each recorded series has hand-computed expectations in the DORA unit tests, at two
    evaluation times or more: inside a window and outside it, or at and after an event."""
    cases = [case for name in DORA_TEST_FILES for case in _load(UNIT_TEST_DIR / name)["tests"]]
    assert all(case.get("name") for case in cases)
    checks = [check for case in cases for check in case["promql_expr_test"]]
    for name in {rule["record"] for rule in _records(groups)}:
        mine = [check for check in checks if check["expr"] == name]
        assert any(check["exp_samples"] for check in mine), f"{name} is never asserted"
        assert len({check["eval_time"] for check in mine}) >= 2, f"{name}: one time only"


def test_recording_rule_names_follow_level_metric_operations(groups: list[dict]) -> None:
    for rule in _records(groups):
        level, metric, operations = rule["record"].split(":")
        assert metric.startswith("promotion_"), rule["record"]
        assert level and operations, rule["record"]


def test_alert_names_are_the_contract(groups: list[dict]) -> None:
    names = [rule["alert"] for rule in _alerts(groups)]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"Promotion(?:[A-Z][a-z0-9]*)+", name), name
    assert set(names) == ALERTS
    assert CONTRACT_ALERTS <= ALERTS, CONTRACT_ALERTS - ALERTS


def test_contract_severities_and_for(groups: list[dict]) -> None:
    rules = {rule["alert"]: rule for rule in _alerts(groups)}
    for name, (severity, for_) in CONTRACT_SEVERITIES.items():
        assert rules[name]["labels"]["severity"] == severity, name
        assert rules[name].get("for") == for_, name


def test_every_alert_is_actionable(groups: list[dict]) -> None:
    anchors = runbook_anchors()
    for rule in _alerts(groups):
        name, annotations = rule["alert"], rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert annotations["summary"].endswith("."), name
        assert "{{" in annotations["description"], name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page.endswith("/docs/runbook.md"), name
        assert anchor in anchors, f"{name}: no heading #{anchor} in docs/runbook.md"
        assert annotations["dashboard_url"].startswith(("http://", "https://")), name


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("max by (pipeline) (promotion_lag_seconds) > 14400", {"promotion_lag_seconds"}),
        (
            "1 - avg_over_time(promotion_canary_check_healthy[15m]) > 0.2",
            {"promotion_canary_check_healthy"},
        ),
        ('up{job="promotion-exporter"} == 0 or absent(up{job="promotion-exporter"})', {"up"}),
        (
            "(promotion_source_up == 0) * on (kind, name) group_right () "
            "promotion_pipeline_source_info",
            {"promotion_source_up", "promotion_pipeline_source_info"},
        ),
        (
            'max without (status) (a_b{node="x", status="failing"} == 1)\nunless on (pipeline)\n'
            '(c:d{node=~"e|f", status!="ok"} offset 5m == 1)',
            {"a_b", "c:d"},
        ),
        ('(max_over_time(a_b{node=~"e|f", status="ok"}[3m]) == 0)', {"a_b"}),
    ],
)
def test_metric_names_are_extracted_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_metric_an_alert_reads_is_documented(groups: list[dict]) -> None:
    documented = documented_metrics()
    used: set[str] = set()
    recorded = {rule["record"] for rule in _records(groups)}
    for rule in _records(groups):
        used |= metric_names(rule["expr"]) - recorded
    for rule in _alerts(groups):
        used |= metric_names(rule["expr"])
        # The descriptions look versions up with `query`; those queries read metrics too.
        # Only printf's argument is a query; other backticks in the prose are not PromQL.
        for query in re.findall(r"printf `([^`]+)`", rule["annotations"]["description"]):
            used |= metric_names(query)
    assert "promotion_tree_node_status" in used
    assert "promotion_version_info" in used
    assert used - PROMETHEUS_SERIES <= documented, sorted(used - PROMETHEUS_SERIES - documented)


def _generate(out: Path, *flags: str) -> int:
    return main(["generate", "rules", "--out", str(out), *flags])


def test_generate_rules_applies_thresholds_and_for_override(tmp_path: Path) -> None:
    assert _generate(tmp_path, "--lag-threshold", "6h", "--for-override", "0s") == 0
    generated = _alerts(_load(tmp_path / PLAIN_RULES_FILE)["groups"])
    shipped = {rule["alert"]: rule for rule in _alerts(_load(PLAIN_RULES)["groups"])}
    assert (
        _load(tmp_path / PROMETHEUS_RULE_FILE)["spec"]["groups"]
        == _load(tmp_path / PLAIN_RULES_FILE)["groups"]
    )
    assert {rule["alert"] for rule in generated} == set(shipped)
    lag = next(rule for rule in generated if rule["alert"] == "PromotionLagHigh")
    assert unwrapped(lag["expr"]) == "max by (pipeline) (promotion_lag_seconds) > 21600"
    assert "(threshold 6h)" in lag["annotations"]["description"]
    assert "(threshold 4h)" in shipped["PromotionLagHigh"]["annotations"]["description"]
    assert all("for" not in rule for rule in generated)
    assert sum("for" in rule for rule in shipped.values()) > 0
    for rule in generated:
        if rule["alert"] != "PromotionLagHigh":
            expected = dict(shipped[rule["alert"]])
            expected.pop("for", None)
            # Without for: there is no pending state a blip could reset: earlier nodes silence
            # at once.
            if "max_over_time" in expected["expr"]:
                assert "max_over_time" not in rule["expr"]
                assert 'status!="ok"} == 1)' in rule["expr"]
                expected["expr"] = rule["expr"]
            assert rule == expected, rule["alert"]


def test_generate_rules_applies_the_dora_failure_window(tmp_path: Path) -> None:
    assert _generate(tmp_path, "--dora-failure-window", "30m") == 0
    groups = _load(tmp_path / PLAIN_RULES_FILE)["groups"]
    verdict = next(
        rule["expr"]
        for rule in _records(groups)
        if rule["record"] == "pipeline:promotion_live_change_failed:bool"
    )
    # The deployment 30m back, live's state just before it, and the 30m that followed it.
    assert "offset 30m" in verdict and "offset 35m" in verdict and "[30m]" in verdict
    assert "1h" not in verdict


def unwrapped(expr: str) -> str:
    """The expression inside the aggregation over exporter replicas, which every alert but
    PromotionExporterDown has."""
    head, tail = "max without (instance, pod) (\n", "\n)"
    assert expr.startswith(head) and expr.endswith(tail), expr
    return "\n".join(line.removeprefix("  ") for line in expr[len(head) : -len(tail)].split("\n"))


def _tree_exprs(groups: list[dict]) -> dict[str, str]:
    return {
        rule["alert"]: unwrapped(rule["expr"])
        for group in groups
        if group["name"].endswith("-tree")
        for rule in group["rules"]
    }


def test_earlier_nodes_silence_later_ones_only_after_the_suppression_window(
    groups: list[dict],
) -> None:
    exprs = _tree_exprs(groups)
    assert "unless" not in exprs["PromotionBuildFailing"]
    assert "unless" not in exprs["PromotionStableTagMissing"]
    assert exprs["PromotionValidationNotDispatched"].endswith(
        '\nunless on (pipeline)\n(max_over_time(promotion_tree_node_status{tree="integration", '
        'node=~"build_succeeded|artifact_in_registry|integration_source_selects_candidate|'
        'integration_source_ready|integration_source_current|integration_applied", '
        'status="ok"}[3m]) == 0)'
    )
    later = [expr for alert, expr in exprs.items() if "unless" in expr]
    assert len(later) == len(exprs) - 2
    assert all('status="ok"}[3m]) == 0)' in expr for expr in later)


def test_generate_rules_applies_the_suppression_window(tmp_path: Path) -> None:
    flags = ("--suppression-window", "1m", "--node-for", "PromotionLivePinned=2m")
    assert _generate(tmp_path, *flags) == 0
    exprs = _tree_exprs(_load(tmp_path / PLAIN_RULES_FILE)["groups"])
    assert 'status="ok"}[1m]) == 0)' in exprs["PromotionLivePinned"]
    assert _generate(tmp_path, "--suppression-window", "0s") == 0
    exprs = _tree_exprs(_load(tmp_path / PLAIN_RULES_FILE)["groups"])
    assert 'node=~"build_succeeded", status!="ok"} == 1)' in exprs["PromotionArtifactMissing"]
    assert not any("max_over_time" in expr for expr in exprs.values())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--lag-threshold", "banana"), "'banana' is not a duration"),
        (("--node-for", "NoSuchAlert=1m"), "--node-for names no tree alert: NoSuchAlert"),
        (("--node-for", "PromotionArtifactMissing"), "is not ALERT=DURATION"),
        (("--node-for", "PromotionArtifactMissing=soon"), "'soon' is not a duration"),
        (("--suppression-window", "soon"), "'soon' is not a duration"),
        (
            ("--suppression-window", "5m"),
            "--suppression-window 5m must be shorter than every tree for: "
            "(PromotionBuildFailing has 5m)",
        ),
        (
            ("--node-for", "PromotionLivePinned=3m"),
            "--suppression-window 3m must be shorter than every tree for: "
            "(PromotionLivePinned has 3m)",
        ),
        (("--for-override", "1m"), "(PromotionBuildFailing has 1m)"),
        (("--dora-failure-window", "1m"), "--dora-failure-window must be at least 5m"),
        (("--dora-failure-window", "an hour"), "'an hour' is not a duration"),
    ],
)
def test_generate_rules_rejects_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "rules"
    assert _generate(out, *flags) != 0
    error = capsys.readouterr().err
    assert error.startswith("generate rules: "), error
    assert message in error
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus with the plain rule file and nothing to scrape; yields its URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump({"global": {"evaluation_interval": "1s"}, "rule_files": [str(PLAIN_RULES)]})
    )
    address = f"127.0.0.1:{free_port()}"
    url = f"http://{address}"
    log = tmp_path / "prometheus.log"
    process = spawn(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
        ],
        log,
    )
    try:
        wait_ready(process, f"{url}/-/ready", log, "prometheus", STARTUP_SECONDS)
        yield url
    finally:
        stop_cleanly(process, log, "prometheus")


def _loaded_rules(url: str) -> list[dict]:
    response = httpx.get(f"{url}/api/v1/rules", timeout=2.0)
    response.raise_for_status()
    return [rule for group in response.json()["data"]["groups"] for rule in group["rules"]]


@pytest.mark.e2e
def test_prometheus_loads_and_evaluates_every_rule(prometheus: str, groups: list[dict]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    alerting = [rule for rule in _loaded_rules(prometheus) if rule["type"] == "alerting"]
    # Health turns from "unknown" to "ok" after the first evaluation without error.
    while len(alerting) != len(ALERTS) or any(r["health"] != "ok" for r in alerting):
        assert time.monotonic() < deadline, f"rules after {STARTUP_SECONDS}s: {alerting}"
        time.sleep(0.1)
        alerting = [rule for rule in _loaded_rules(prometheus) if rule["type"] == "alerting"]
    assert {rule["name"] for rule in alerting} == ALERTS
    # The 5m events group may not have run yet; test_dora_e2e checks what they record.
    recording = [rule for rule in _loaded_rules(prometheus) if rule["type"] == "recording"]
    assert len(recording) == len(_records(groups))
    assert all(rule["health"] in ("ok", "unknown") for rule in recording), recording
