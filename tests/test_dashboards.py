"""The Grafana dashboards: committed files, panel conventions, and every query run by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from grafana_foundation_sdk.models import units
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter import cli, dashboards, rules
from exporter.collector import METRICS, PromotionCollector
from exporter.config import parse_duration
from exporter.model import STAGES, build_state
from exporter.poller import Poller
from exporter.trees import TREES
from tests import snapshots

DASHBOARDS_DIR = Path(__file__).resolve().parent.parent / "dashboards"
PROMTOOL = "/usr/bin/promtool"
KUBERNETES_VERSION = "1.30"
DATASOURCE = "${datasource}"
_RULES = [rule for group in rules.rule_groups(rules.RuleOptions()) for rule in group["rules"]]
ALERTS = frozenset(rule["alert"] for rule in _RULES if "alert" in rule)
RECORDED = frozenset(rule["record"] for rule in _RULES if "record" in rule)
SAMPLE_NAMES = {spec.sample_name: spec for spec in METRICS.values()}
GRAFANA_UNITS = frozenset(
    value for name, value in vars(units).items() if not name.startswith("_") and type(value) is str
)
# Functions, aggregations and keywords the dashboard's PromQL may use besides metric names.
PROMQL_WORDS = frozenset(
    {"max", "min", "sum", "count", "bottomk", "rate", "avg_over_time", "or", "and", "unless"}
)
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"\b(promotion_\w+)(\{[^}]*\})?")
_PIPELINE_MATCHER = re.compile(r'\bpipeline=~?"\$(?:pipeline|\{pipeline\})"')


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return dashboards.render_files()


@pytest.fixture(scope="module")
def overview(files: dict[str, str]) -> dict[str, Any]:
    return json.loads(files[dashboards.OVERVIEW_FILE])


@pytest.fixture(scope="module")
def panels(overview: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in overview["panels"] if panel["type"] != "row"]


def panel_titled(panels: list[dict[str, Any]], title: str) -> dict[str, Any]:
    (panel,) = [panel for panel in panels if panel["title"] == title]
    return panel


def expressions(panel: dict[str, Any]) -> list[str]:
    return [target["expr"] for target in panel["targets"]]


def named_alerts(text: str) -> list[str]:
    return re.findall(r"\bPromotion[A-Z]\w+", text)


def unscoped_selectors(expr: str) -> list[str]:
    """Selectors of a metric with a pipeline label that do not filter on the variable."""
    return [
        match.group(0)
        for match in _SELECTOR.finditer(expr)
        if match.group(1) in SAMPLE_NAMES
        and "pipeline" in SAMPLE_NAMES[match.group(1)].labels
        and not _PIPELINE_MATCHER.search(match.group(2) or "")
    ]


def unknown_identifiers(expr: str) -> set[str]:
    """Names in the query that are neither exposed metrics nor PromQL words."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = _GROUPING.sub("", text)
    names = set(re.findall(r"[A-Za-z_:][\w:]*", text))
    return names - PROMQL_WORDS - set(SAMPLE_NAMES) - RECORDED


# --- The committed files ----------------------------------------------------------------------


def test_cli_generates_the_files(
    tmp_path: Path, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["generate", "dashboards", "--out", str(tmp_path)]) == 0
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == files
    printed = capsys.readouterr().out.splitlines()
    assert sorted(printed) == sorted(f"wrote {tmp_path / name}" for name in files)


def test_configmap_embeds_exactly_the_dashboard(files: dict[str, str]) -> None:
    (document,) = list(yaml.safe_load_all(files[dashboards.CONFIGMAP_FILE]))
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert (document["apiVersion"], document["kind"]) == ("v1", "ConfigMap")
    metadata = document["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["annotations"]["grafana_folder"] == "Promotion"
    assert document["data"] == {dashboards.OVERVIEW_FILE: files[dashboards.OVERVIEW_FILE]}


# --- Dashboard conventions --------------------------------------------------------------------


def test_overview_has_the_uid_and_title_the_alert_links_use(overview: dict[str, Any]) -> None:
    assert overview["uid"] == "promotion-overview"
    slug = overview["title"].lower().replace(" ", "-")
    assert rules.DEFAULT_DASHBOARD_URL.endswith(f"/d/{overview['uid']}/{slug}")


def test_datasource_and_pipeline_variables(overview: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in overview["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    pipeline = variables["pipeline"]
    assert pipeline["type"] == "query"
    assert pipeline["query"] == "label_values(promotion_version_info, pipeline)"
    assert pipeline["datasource"]["uid"] == DATASOURCE


def test_panel_ids_are_unique_and_the_grid_fits(overview: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in overview["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in overview["panels"])


def test_every_panel_has_a_grafana_unit(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        assert panel["fieldConfig"]["defaults"].get("unit") in GRAFANA_UNITS, panel["title"]


def test_every_description_names_existing_alerts_and_links_their_runbook(
    panels: list[dict[str, Any]],
) -> None:
    for panel in panels:
        alerts = named_alerts(panel["description"])
        assert alerts, f"{panel['title']}: its description names no alert"
        assert set(alerts) <= ALERTS, f"{panel['title']}: {set(alerts) - ALERTS}"
        links = {link["url"] for link in panel["links"]}
        assert links == {f"{rules.DEFAULT_RUNBOOK_URL}#{alert.lower()}" for alert in alerts}


def test_alert_name_check_is_able_to_fail() -> None:
    assert set(named_alerts("Alert: PromotionLagHigh, PromotionLagTooHigh.")) - ALERTS == {
        "PromotionLagTooHigh"
    }


def test_every_panel_and_target_uses_the_datasource_variable(
    panels: list[dict[str, Any]],
) -> None:
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, panel["title"]


def test_pipeline_metrics_are_filtered_on_the_pipeline_variable(
    panels: list[dict[str, Any]],
) -> None:
    for panel in panels:
        for expr in expressions(panel):
            assert unscoped_selectors(expr) == [], panel["title"]


def test_queries_use_only_exposed_metrics(panels: list[dict[str, Any]]) -> None:
    for panel in panels:
        for expr in expressions(panel):
            assert unknown_identifiers(expr) == set(), panel["title"]
            assert "$__" not in expr, panel["title"]


def test_query_checks_are_able_to_fail() -> None:
    assert unscoped_selectors("max(promotion_lag_seconds) > 1") == ["promotion_lag_seconds"]
    assert unscoped_selectors('promotion_lag_seconds{pipeline="x"}') != []
    assert unscoped_selectors('promotion_lag_seconds{pipeline=~"$pipeline"}') == []
    assert unscoped_selectors("promotion_source_up") == []
    assert unknown_identifiers("rate(promotion_source_errors[5m])") == {"promotion_source_errors"}
    assert unknown_identifiers("up * on (job) promotion_polls_total") == {"up"}


def test_the_dashboard_shows_the_metrics_the_pipeline_needs(
    panels: list[dict[str, Any]],
) -> None:
    used = " ".join(expr for panel in panels for expr in expressions(panel))
    for metric in (
        "promotion_version_info",
        "promotion_lag_seconds",
        "promotion_validation_staleness_seconds",
        "promotion_canary_check_healthy",
        "promotion_tree_node_status",
        "promotion_source_up",
        "promotion_source_errors_total",
        "promotion_github_rate_limit_remaining",
        "promotion_github_rate_limit_limit",
        "promotion_workflow_last_run_timestamp_seconds",
        "promotion_workflow_recent_runs",
    ):
        assert re.search(rf"\b{metric}\b", used), metric


def test_version_panels_follow_the_pipeline_order(panels: list[dict[str, Any]]) -> None:
    versions = [panel for panel in panels if panel["title"].endswith(" version")]
    assert [panel["title"] for panel in versions] == [f"{s.capitalize()} version" for s in STAGES]
    for stage, panel in zip(STAGES, versions, strict=True):
        assert f'stage="{stage}"' in expressions(panel)[0]
        assert panel["options"]["reduceOptions"]["fields"] == "/^version$/"


def test_thresholds_sit_where_the_alerts_fire(panels: list[dict[str, Any]]) -> None:
    options = rules.RuleOptions()
    expected = {
        "Promotion lag per stage": parse_duration(options.lag_threshold),
        "Oldest unpromoted build": parse_duration(options.lag_threshold),
        "Validation staleness": parse_duration(options.staleness_threshold),
        f"Canary failure rate ({options.canary_window})": options.canary_failure_ratio,
    }
    for title, threshold in expected.items():
        steps = panel_titled(panels, title)["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1] == {"value": threshold, "color": "red"}, title
    assert parse_duration(options.lag_threshold) == 4 * 3600
    assert parse_duration(options.staleness_threshold) == 2 * 3600


def test_promote_run_panels_say_frequent_reruns_are_normal(panels: list[dict[str, Any]]) -> None:
    promote = [
        panel
        for panel in panels
        if any("promotion_workflow" in expr for expr in expressions(panel))
        and "promote" in panel["description"]
    ]
    assert len(promote) == 2
    for panel in promote:
        assert "every 10 minutes is normal" in panel["description"]
        assert "idempotency guard" in panel["description"]


def test_current_node_mappings_name_every_tree_alert(panels: list[dict[str, Any]]) -> None:
    panel = panel_titled(panels, "Current node of each tree")
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    texts = [option["text"] for option in mapping["options"].values()]
    assert texts[0] == "every node ok"
    assert [named_alerts(text)[0] for text in texts[1:]] == [
        node.alert for tree in TREES for node in tree.nodes
    ]


def test_panel_queries_list_every_target(panels: list[dict[str, Any]]) -> None:
    listed = dashboards.panel_queries() + dashboards.dora_panel_queries()
    every = [(panel["title"], expr) for panel in panels for expr in expressions(panel)]
    assert sorted(listed) == sorted(every)
    assert len(listed) == len(set(listed))
    assert len({title for title, _expr in listed}) == len(panels)


def test_the_dora_row_reads_only_the_dora_recording_rules() -> None:
    dora = dashboards.dora_panel_queries()
    assert {title for title, _query in dora} == {
        "Lead time per hop",
        "Deployments per day",
        "Change failure rate",
        "Time to restore",
        "Live failing",
    }
    for _title, query in dora:
        recorded = set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", query))
        assert recorded and recorded <= RECORDED, query
        assert _PIPELINE_MATCHER.search(query), query


def test_stage_changes_are_annotated_on_the_overview(overview: dict[str, Any]) -> None:
    (annotation,) = overview["annotations"]["list"]
    assert annotation["datasource"]["uid"] == DATASOURCE
    assert "promotion_applied_timestamp_seconds" in annotation["expr"]
    assert _PIPELINE_MATCHER.search(annotation["expr"])


def test_substitute_leaves_no_grafana_variable() -> None:
    for _title, query in dashboards.panel_queries():
        concrete = dashboards.substitute(query, "platform")
        assert "$" not in concrete
    assert dashboards.substitute('x{pipeline="${pipeline}"} or y{pipeline="$pipeline"}', "p") == (
        'x{pipeline="p"} or y{pipeline="p"}'
    )


# --- Every query, run by promtool on a real exposition ----------------------------------------

OTHER_PIPELINE = "other"
EVAL_MINUTES = 10


@pytest.fixture(scope="module")
def exposition() -> Iterator[list[Sample]]:
    """The collector's samples for the rich snapshot: some tree nodes fail, one source is down."""
    config = snapshots.pipeline_config()
    # A real Poller: its clients connect lazily, so constructing it sends nothing.
    poller = Poller(config)
    poller.state = build_state(config, snapshots.rich_snapshot())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PromotionCollector(poller))
    text = generate_latest(registry).decode()
    poller.close()
    yield [s for family in text_string_to_metric_families(text) for s in family.samples]


def other_pipeline(samples: list[Sample]) -> list[Sample]:
    """A second pipeline whose every tree node fails: no panel of the first may show it."""
    others = []
    for sample in samples:
        if sample.labels.get("pipeline") != snapshots.PIPELINE:
            continue
        labels = {**sample.labels, "pipeline": OTHER_PIPELINE}
        value = sample.value
        if sample.name == "promotion_tree_node_status":
            value = 1.0 if labels["status"] == "failing" else 0.0
        others.append(sample._replace(labels=labels, value=value))
    return others


def replicas(samples: list[Sample], *instances: str) -> list[Sample]:
    """The samples as Prometheus stores them when it scrapes several exporter replicas."""
    return [
        sample._replace(labels={**sample.labels, "job": "promotion-exporter", "instance": instance})
        for instance in instances
        for sample in samples
    ]


def series(sample: Sample) -> dict[str, str]:
    labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
    return {"series": f"{sample.name}{{{labels}}}", "values": f"{sample.value:.15g}+0x20"}


def node_status(samples: list[Sample]) -> dict[tuple[str, str], str]:
    """{(tree, node): status} of the snapshot's pipeline, read straight from the samples."""
    return {
        (s.labels["tree"], s.labels["node"]): s.labels["status"]
        for s in samples
        if s.name == "promotion_tree_node_status"
        and s.labels["pipeline"] == snapshots.PIPELINE
        and s.value == 1
    }


def current_node_expectations(
    samples: list[Sample], panels: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    statuses = node_status(samples)
    panel = panel_titled(panels, "Current node of each tree")
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    codes = list(mapping["options"].items())[1:]
    code_of = {named_alerts(option["text"])[0]: float(value) for value, option in codes}
    expected = []
    for tree in TREES:
        stuck = [node for node in tree.nodes if statuses[(tree.id, node.id)] != "ok"]
        labels = f'pipeline="{snapshots.PIPELINE}", tree="{tree.id}"'
        if stuck:
            node = stuck[0]
            status = statuses[(tree.id, node.id)]
            labels += f', node="{node.id}", status="{status}"'
        expected.append({"labels": f"{{{labels}}}", "value": code_of[node.alert] if stuck else 0})
    return expected


def promtool_tests(
    samples: list[Sample], expression_tests: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    document = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [series(sample) for sample in samples],
                "promql_expr_test": expression_tests,
            }
        ],
    }
    return subprocess.run(
        [PROMTOOL, "test", "rules", "/dev/stdin"],
        input=yaml.safe_dump(document),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def returns_data(query: str) -> dict[str, Any]:
    return {
        "expr": f"clamp_max(count({query}), 1) or vector(0)",
        "eval_time": f"{EVAL_MINUTES}m",
        "exp_samples": [{"labels": "{}", "value": 1}],
    }


@pytest.mark.skipif(not shutil.which(PROMTOOL), reason="promtool is not installed")
def test_every_panel_query_returns_data_from_two_exporter_replicas(
    exposition: list[Sample],
) -> None:
    samples = replicas(
        exposition + other_pipeline(exposition), "exporter-0:9883", "exporter-1:9883"
    )
    tests = [
        returns_data(dashboards.substitute(query, snapshots.PIPELINE))
        for _title, query in dashboards.panel_queries()
    ]
    result = promtool_tests(samples, tests)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which(PROMTOOL), reason="promtool is not installed")
def test_current_node_is_the_first_node_not_ok_in_tree_order(
    exposition: list[Sample], panels: list[dict[str, Any]]
) -> None:
    (current,) = expressions(panel_titled(panels, "Current node of each tree"))
    expected = current_node_expectations(exposition, panels)
    assert any(entry["value"] != 0 for entry in expected), "the snapshot has a stuck tree"
    test = {
        "expr": dashboards.substitute(current, snapshots.PIPELINE),
        "eval_time": f"{EVAL_MINUTES}m",
        "exp_samples": expected,
    }
    result = promtool_tests(exposition + other_pipeline(exposition), [test])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which(PROMTOOL), reason="promtool is not installed")
def test_promtool_run_is_able_to_fail(exposition: list[Sample]) -> None:
    result = promtool_tests(
        exposition, [returns_data('promotion_lag_seconds{pipeline="no-such-pipeline"}')]
    )
    assert result.returncode != 0
    assert "no-such-pipeline" in result.stdout + result.stderr
