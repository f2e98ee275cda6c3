"""Grafana dashboards, built in code with grafana-foundation-sdk.

`promotion-exporter generate dashboards` writes the dashboard JSON and a ConfigMap for Grafana's
dashboard sidecar. Thresholds come from the rules' defaults, so a line on a graph sits where its
alert fires, and every panel names the alerts it explains and links to their runbook sections.
Queries avoid Grafana's interval variables, so each one also answers an instant query once
`substitute` has filled in the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as grafana
from grafana_foundation_sdk.models.prometheus import Dataquery as PrometheusQuery
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from exporter import yamlfile
from exporter.config import parse_duration
from exporter.model import STAGES
from exporter.rules import DEFAULT_RUNBOOK_URL, RuleOptions
from exporter.seed import ALERT_NAME, BUILD_WORKFLOW, CANARY_NAME, PROMOTE_WORKFLOW, STAGE_TEXT
from exporter.snapshot import ErrorReason
from exporter.trees import TREES, Node, Tree

OVERVIEW_UID = "promotion-overview"
OVERVIEW_TITLE = "Promotion pipeline"
OVERVIEW_FILE = "promotion-overview.json"
CONFIGMAP_FILE = "promotion-dashboards-configmap.yaml"
NAMESPACE = "monitoring"
FOLDER = "Promotion"
SIDECAR_LABEL = "grafana_dashboard"
FOLDER_ANNOTATION = "grafana_folder"

DATASOURCE = grafana.DataSourceRef(type_val="prometheus", uid="${datasource}")
PIPELINE = 'pipeline="$pipeline"'

_Panel = TypeVar("_Panel", stat.Panel, table.Panel, timeseries.Panel, statetimeline.Panel)

_GREEN, _RED, _ORANGE, _BLUE, _NEUTRAL = "green", "red", "orange", "blue", "text"

_IDEMPOTENCY_NOTE = (
    f"A promote run about every 10 minutes is normal: the {ALERT_NAME} Alert fires on every "
    "Flux reconciliation, and the workflow's idempotency guard skips an artifact that already "
    "has its validated-<sha> tag."
)


def _stem(workflow_file: str) -> str:
    return workflow_file.removesuffix(".yaml")


# --- Small builders ---------------------------------------------------------------------


def _description(text: str, alerts: tuple[str, ...]) -> str:
    label = "Alert" if len(alerts) == 1 else "Alerts"
    return f"{text} {label}: {', '.join(alerts)}."


def _runbook_link(alert: str) -> dashboard_builders.DashboardLink:
    return (
        dashboard_builders.DashboardLink(f"Runbook: {alert}")
        .url(f"{DEFAULT_RUNBOOK_URL}#{alert.lower()}")
        .target_blank(True)
    )


def _query(expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def _series(expr: str, legend: str) -> prometheus.Dataquery:
    return _query(expr, legend).range()


def _current(expr: str, legend: str = "__auto") -> prometheus.Dataquery:
    return _query(expr, legend).instant()


def _rows(expr: str) -> prometheus.Dataquery:
    """One table row per series, its labels as columns."""
    return _query(expr, "__auto").instant().format(PromQueryFormat.TABLE)


def _panel(
    panel: _Panel,
    title: str,
    text: str,
    alerts: tuple[str, ...],
    unit: str,
    *queries: prometheus.Dataquery,
) -> _Panel:
    panel.title(title).description(_description(text, alerts)).unit(unit).datasource(DATASOURCE)
    panel.links([_runbook_link(alert) for alert in alerts])
    for index, query in enumerate(queries):
        panel.with_target(query.ref_id(chr(ord("A") + index)))
    return panel


def _steps(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(grafana.ThresholdsMode.ABSOLUTE)
        .steps([grafana.Threshold(value, color) for value, color in steps])
    )


def _limit(seconds: float) -> dashboard_builders.ThresholdsConfig:
    return _steps((None, _GREEN), (seconds, _RED))


def _values(mapping: dict[float, tuple[str, str]]) -> list[grafana.ValueMapping]:
    """Value mappings {value: (text, color)}, in the given order."""
    options = {
        f"{value:g}": grafana.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, (text, color)) in enumerate(mapping.items())
    }
    return [grafana.ValueMap(options)]


def _single_stat(panel: stat.Panel) -> stat.Panel:
    return (
        panel.graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def _graph(panel: timeseries.Panel, threshold: float | None = None) -> timeseries.Panel:
    panel.legend(
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    ).tooltip(
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )
    if threshold is not None:
        panel.thresholds(_limit(threshold)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphTresholdsStyleMode.LINE_AND_AREA
            )
        )
    return panel


def _timeline(panel: statetimeline.Panel) -> statetimeline.Panel:
    return (
        panel.show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )


# --- Where is the change ------------------------------------------------------------------


def _stage_version(stage: str) -> stat.Panel:
    text, alerts = STAGE_TEXT[stage]
    panel = _panel(
        stat.Panel(),
        f"{stage.capitalize()} version",
        f'{text} The version label of promotion_version_info{{stage="{stage}"}}.',
        alerts,
        units.String,
        _rows(f'promotion_version_info{{{PIPELINE}, stage="{stage}"}}'),
    )
    panel.reduce_options(
        common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("/^version$/")
    ).graph_mode(common.BigValueGraphMode.NONE).color_mode(common.BigValueColorMode.VALUE)
    panel.no_value("none").thresholds(_steps((None, _BLUE)))
    if stage == "live":
        # The same test as PromotionLivePrerelease: a hyphen makes a semver a pre-release.
        panel.mappings(
            [
                grafana.RegexMap(
                    grafana.DashboardRegexMapOptions(
                        pattern=".+-.+", result=grafana.ValueMappingResult(color=_RED, index=0)
                    )
                )
            ]
        )
    return panel.height(4).span(4)


def _oldest_unpromoted(lag: float, lag_text: str) -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        "Oldest unpromoted build",
        "Age of the oldest build that has not reached every stage yet; 0 when live is current. "
        f"PromotionLagHigh pages above {lag_text}.",
        ("PromotionLagHigh",),
        units.Seconds,
        _current(f"max by (pipeline) (promotion_lag_seconds{{{PIPELINE}}})", "lag"),
    )
    return _single_stat(panel).thresholds(_limit(lag)).height(4).span(4)


def _artifacts_table() -> table.Panel:
    panel = _panel(
        table.Panel(),
        "Artifacts at each stage",
        "Version, source revision and OCI manifest digest at each stage: two stages run the "
        "same artifact when their digests match. A pre-release in live pages.",
        ("PromotionLivePrerelease", "PromotionStableNotHigher"),
        units.String,
        _rows(f"promotion_version_info{{{PIPELINE}}}"),
    )
    organize = {
        "excludeByName": dict.fromkeys(
            ("Time", "Value", "__name__", "instance", "job", "pipeline"), True
        ),
        "indexByName": {"stage": 0, "version": 1, "revision": 2, "digest": 3},
    }
    panel.with_transformation(grafana.DataTransformerConfig(id_val="organize", options=organize))
    return panel.height(6).span(24)


# --- Lag ------------------------------------------------------------------------------------


def _lag_graph(lag: float, lag_text: str) -> timeseries.Panel:
    panel = _panel(
        timeseries.Panel(),
        "Promotion lag per stage",
        "Age of the oldest build that has not reached each stage; 0 when the stage is current. "
        f"The line is PromotionLagHigh's threshold ({lag_text}).",
        ("PromotionLagHigh",),
        units.Seconds,
        _series(f"promotion_lag_seconds{{{PIPELINE}}}", "{{stage}}"),
    )
    return _graph(panel, lag).min(0).height(8).span(12)


def _staleness_graph(staleness: float, staleness_text: str) -> timeseries.Panel:
    panel = _panel(
        timeseries.Panel(),
        "Validation staleness",
        "Seconds since integration applied its artifact while that artifact still has no "
        f"validated-<sha> tag; 0 once validated. The line is the {staleness_text} threshold.",
        ("PromotionValidationStale", "PromotionValidationNotDispatched"),
        units.Seconds,
        _series(f"promotion_validation_staleness_seconds{{{PIPELINE}}}", "staleness"),
    )
    return _graph(panel, staleness).min(0).height(8).span(12)


# --- Debugging trees ------------------------------------------------------------------------


def _coded_nodes() -> list[tuple[int, Tree, int, Node]]:
    """Every node with a code unique across both trees, increasing in tree order."""
    numbered = [
        (tree, position, node)
        for tree in TREES
        for position, node in enumerate(tree.nodes, start=1)
    ]
    return [(code, *entry) for code, entry in enumerate(numbered, start=1)]


def _tree_alerts() -> tuple[str, ...]:
    return tuple(node.alert for tree in TREES for node in tree.nodes)


def _current_node_expr() -> str:
    """Per tree, the code of its first node that is not ok, or 0 when every node is ok.

    The 0 keeps the panel from reading "No data" for a healthy tree.
    """
    terms = [
        f'(promotion_tree_node_status{{{PIPELINE}, tree="{tree.id}", node="{node.id}", '
        f'status!="ok"}} == 1) * {code}'
        for code, tree, _position, node in _coded_nodes()
    ]
    first = "bottomk by (pipeline, tree) (1,\n    " + "\n  or\n    ".join(terms) + "\n)"
    every_tree = f"max by (pipeline, tree) (promotion_tree_node_status{{{PIPELINE}}}) * 0"
    return f"{first}\nor on (pipeline, tree)\n  {every_tree}"


def _current_nodes() -> stat.Panel:
    mapping: dict[float, tuple[str, str]] = {0: ("every node ok", _GREEN)}
    for code, _tree, position, node in _coded_nodes():
        mapping[code] = (f"{position}. {node.alert}", _RED)
    panel = _panel(
        stat.Panel(),
        "Current node of each tree",
        "The first node of each debugging tree that is not ok: its cause alert fires once the "
        "node has failed for the alert's for: duration (a node that is unknown because a source "
        "is down fires nothing). Runbook sections follow the trees in order.",
        _tree_alerts(),
        units.NoUnit,
        _current(_current_node_expr(), "{{tree}}"),
    )
    panel.mappings(_values(mapping)).thresholds(_steps((None, _GREEN)))
    panel.text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    return _single_stat(panel).color_mode(common.BigValueColorMode.BACKGROUND).height(9).span(8)


def _node_timeline() -> statetimeline.Panel:
    # failing counts twice so that one number per node tells the three states apart
    expr = (
        f'sum by (tree, node) (promotion_tree_node_status{{{PIPELINE}, status="failing"}} * 2 '
        f'or promotion_tree_node_status{{{PIPELINE}, status="unknown"}})'
    )
    panel = _panel(
        statetimeline.Panel(),
        "Debugging tree nodes",
        "Every node of both trees over time: ok, failing, or unknown while a source it needs is "
        "down. The first failing node of a tree is the one its cause alert names.",
        (*_tree_alerts(), "PromotionSourceDown"),
        units.NoUnit,
        _series(expr, "{{tree}}: {{node}}"),
    )
    panel.mappings(_values({0: ("ok", _GREEN), 1: ("unknown", _NEUTRAL), 2: ("failing", _RED)}))
    return _timeline(panel).height(9).span(16)


# --- Canaries -------------------------------------------------------------------------------

_CANARY_LEGEND = "{{cluster}} {{namespace}}/{{canary}}: {{check}}"


def _canary_timeline() -> statetimeline.Panel:
    panel = _panel(
        statetimeline.Panel(),
        "Canary checks",
        f"Last result of each canary-checker check ({CANARY_NAME} runs every 60s).",
        ("PromotionCanaryCheckFailing",),
        units.NoUnit,
        _series("promotion_canary_check_healthy", _CANARY_LEGEND),
    )
    panel.mappings(_values({1: ("healthy", _GREEN), 0: ("failing", _RED)}))
    return _timeline(panel).height(8).span(12)


def _canary_failure_rate(window: str, ratio: float) -> timeseries.Panel:
    panel = _panel(
        timeseries.Panel(),
        f"Canary failure rate ({window})",
        f"Share of failed results of each check over {window}; the line is the {ratio:.0%} "
        "threshold.",
        ("PromotionCanaryFailureRateHigh",),
        units.PercentUnit,
        _series(f"1 - avg_over_time(promotion_canary_check_healthy[{window}])", _CANARY_LEGEND),
    )
    return _graph(panel, ratio).min(0).max(1).height(8).span(12)


# --- Workflows ------------------------------------------------------------------------------


def _last_run(role: str, text: str, alerts: tuple[str, ...]) -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        f"Last {role} workflow run",
        text,
        alerts,
        units.DateTimeFromNow,
        _current(
            f'promotion_workflow_last_run_timestamp_seconds{{{PIPELINE}, role="{role}"}} * 1000'
        ),
    )
    return _single_stat(panel).thresholds(_steps((None, _BLUE))).height(6).span(6)


def _recent_runs() -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        "Recent workflow runs",
        "Recent runs of the build and promote workflows by conclusion (or status while "
        f"running). {_IDEMPOTENCY_NOTE}",
        ("PromotionBuildFailing", "PromotionValidationWorkflowFailing"),
        units.Short,
        _current(f"promotion_workflow_recent_runs{{{PIPELINE}}}", "{{role}}: {{conclusion}}"),
    )
    failed = grafana.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": _RED})
    panel.override_by_regexp(".*(failure|timed_out|startup_failure).*", [failed])
    panel.text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    return _single_stat(panel).thresholds(_steps((None, _BLUE))).height(6).span(12)


# --- Sources --------------------------------------------------------------------------------


def _sources_up() -> statetimeline.Panel:
    panel = _panel(
        statetimeline.Panel(),
        "Sources up",
        "Whether the last poll of each source the pipeline reads succeeded. While a source is "
        "down, the tree nodes that need it are unknown.",
        ("PromotionSourceDown",),
        units.NoUnit,
        _series(
            "promotion_source_up * on (job, instance, kind, name) "
            f"promotion_pipeline_source_info{{{PIPELINE}}}",
            "{{kind}}: {{name}}",
        ),
    )
    panel.mappings(_values({1: ("up", _GREEN), 0: ("down", _RED)}))
    return _timeline(panel).height(8).span(12)


def _source_errors() -> timeseries.Panel:
    expr = (
        "sum by (kind, name, reason) (\n  rate(promotion_source_errors_total[5m])\n"
        "  * on (job, instance, kind, name) group_left ()\n"
        f"  promotion_pipeline_source_info{{{PIPELINE}}}\n)"
    )
    panel = _panel(
        timeseries.Panel(),
        "Source poll errors",
        "Failed polls per second of each source the pipeline reads, by reason "
        f"({', '.join(reason.value for reason in ErrorReason)}).",
        ("PromotionSourceDown",),
        units.CountsPerSecond,
        _series(expr, "{{kind}} {{name}}: {{reason}}"),
    )
    return _graph(panel).min(0).height(8).span(12)


def _github_budget() -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        "GitHub API budget",
        "Share of the GitHub rate-limit window still available. At zero the github source "
        "fails as rate-limited until the window resets.",
        ("PromotionSourceDown",),
        units.PercentUnit,
        _current(
            "promotion_github_rate_limit_remaining / promotion_github_rate_limit_limit", "budget"
        ),
    )
    thresholds = _steps((None, _RED), (0.1, _ORANGE), (0.25, _GREEN))
    return _single_stat(panel).thresholds(thresholds).min(0).max(1).height(5).span(8)


def _github_reset() -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        "GitHub budget resets",
        "When the current GitHub rate-limit window resets.",
        ("PromotionSourceDown",),
        units.DateTimeFromNow,
        _current("promotion_github_rate_limit_reset_timestamp_seconds * 1000", "reset"),
    )
    return _single_stat(panel).thresholds(_steps((None, _BLUE))).height(5).span(8)


def _last_poll() -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        "Last exporter poll",
        "When the exporter last polled every source. No data means Prometheus has no scrape of "
        "the exporter, and no pipeline alert can fire.",
        ("PromotionExporterDown",),
        units.DateTimeFromNow,
        _current("promotion_last_poll_timestamp_seconds * 1000", "last poll"),
    )
    return _single_stat(panel).thresholds(_steps((None, _BLUE))).height(5).span(8)


# --- Delivery (DORA) ------------------------------------------------------------------------
# These read the promotion-dora recording rules, so they need the rules pack and some history:
# the DORA end-to-end test checks them against a simulated week (dora_panel_queries).

DORA_ROW = "Delivery (DORA)"
_DORA_TEXT = (
    " Recorded by the promotion-dora rules from source timestamps, so an exporter restart "
    "loses nothing; docs/dora.md defines it."
)
_LIVE_FAILURE_ALERTS = (
    "PromotionCanaryCheckFailing",
    "PromotionLiveReconcileFailing",
    "PromotionLiveHelmReleaseFailing",
)


def _lead_time_per_hop() -> timeseries.Panel:
    panel = _panel(
        timeseries.Panel(),
        "Lead time per hop",
        "Mean over the last 7 days' deployments of commit to integration, commit to live, and "
        "integration to live (rollbacks left out); dashed, the change live runs now. The slow "
        "hop is the one to look at." + _DORA_TEXT,
        ("PromotionLagHigh",),
        units.Seconds,
        _series(
            f"pipeline_hop:promotion_lead_time_seconds:mean_7d{{{PIPELINE}}}", "{{hop}} (7d mean)"
        ),
        _series(f"pipeline_hop:promotion_lead_time_seconds:last{{{PIPELINE}}}", "{{hop}} (now)"),
    )
    return _graph(panel).min(0).height(8).span(12)


def _deployments_per_day() -> timeseries.Panel:
    panel = _panel(
        timeseries.Panel(),
        "Deployments per day",
        "Changes of each stage's applied artifact per day, over 7 and 30 days; a rollback is a "
        "deployment too." + _DORA_TEXT,
        ("PromotionLagHigh",),
        units.NoUnit,
        _series(f"pipeline_stage:promotion_deployments_per_day:7d{{{PIPELINE}}}", "{{stage}} (7d)"),
        _series(
            f"pipeline_stage:promotion_deployments_per_day:30d{{{PIPELINE}}}", "{{stage}} (30d)"
        ),
    )
    return _graph(panel).min(0).height(8).span(12)


def _change_failure_rate() -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        "Change failure rate",
        "Share of live deployments followed within the failure window (default 1h) by a "
        "failing live check or a rollback, over 7 and 30 days." + _DORA_TEXT,
        _LIVE_FAILURE_ALERTS,
        units.PercentUnit,
        _current(f"pipeline:promotion_change_failure_ratio:7d{{{PIPELINE}}}", "7d"),
        _current(f"pipeline:promotion_change_failure_ratio:30d{{{PIPELINE}}}", "30d"),
    )
    steps = _steps((None, _GREEN), (0.15, _ORANGE), (0.3, _RED))
    return _single_stat(panel).thresholds(steps).no_value("no deployment").height(6).span(8)


def _time_to_restore() -> stat.Panel:
    panel = _panel(
        stat.Panel(),
        "Time to restore",
        "Mean length of the live failures (a failing live canary check, reconcile or "
        "HelmRelease) that started in the last 7 days." + _DORA_TEXT,
        _LIVE_FAILURE_ALERTS,
        units.Seconds,
        _current(f"pipeline:promotion_time_to_restore_seconds:mean_7d{{{PIPELINE}}}", "7d"),
    )
    return _single_stat(panel).thresholds(_limit(3600)).no_value("no failure").height(6).span(8)


def _live_failing() -> statetimeline.Panel:
    panel = _panel(
        statetimeline.Panel(),
        "Live failing",
        "Whether a live canary check, the live reconcile or a live HelmRelease fails: the "
        "failures that count against a change and whose length is the time to restore."
        + _DORA_TEXT,
        _LIVE_FAILURE_ALERTS,
        units.NoUnit,
        _series(f"pipeline:promotion_live_failing:max{{{PIPELINE}}}", "live"),
    )
    panel.mappings(_values({0: ("healthy", _GREEN), 1: ("failing", _RED)}))
    return _timeline(panel).height(6).span(8)


def _dora_panels() -> list[Builder[grafana.Panel]]:
    return [
        _lead_time_per_hop(),
        _deployments_per_day(),
        _change_failure_rate(),
        _time_to_restore(),
        _live_failing(),
    ]


def _stage_changes() -> dashboard_builders.AnnotationQuery:
    """A marker on every time-series panel where a stage applied another artifact."""
    return (
        dashboard_builders.AnnotationQuery()
        .name("Stage changed version")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(_BLUE)
        .expr(f"changes(promotion_applied_timestamp_seconds{{{PIPELINE}}}[2m]) > 0")
    )


# --- The dashboard --------------------------------------------------------------------------


def _variables() -> list[Builder[grafana.VariableModel]]:
    datasource = (
        dashboard_builders.DatasourceVariable("datasource").label("Data source").type("prometheus")
    )
    pipeline = (
        dashboard_builders.QueryVariable("pipeline")
        .label("Pipeline")
        .datasource(DATASOURCE)
        .query("label_values(promotion_version_info, pipeline)")
        .refresh(grafana.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(grafana.VariableSort.ALPHABETICAL_ASC)
    )
    return [datasource, pipeline]


def _sections() -> list[tuple[str, list[Builder[grafana.Panel]]]]:
    options = RuleOptions()
    lag = parse_duration(options.lag_threshold)
    staleness = parse_duration(options.staleness_threshold)
    return [
        (
            "Where is the change",
            [
                *(_stage_version(stage) for stage in STAGES),
                _oldest_unpromoted(lag, options.lag_threshold),
                _artifacts_table(),
            ],
        ),
        (
            "Promotion lag",
            [
                _lag_graph(lag, options.lag_threshold),
                _staleness_graph(staleness, options.staleness_threshold),
            ],
        ),
        ("Debugging trees", [_current_nodes(), _node_timeline()]),
        (
            "Canaries",
            [
                _canary_timeline(),
                _canary_failure_rate(options.canary_window, options.canary_failure_ratio),
            ],
        ),
        (
            "Workflows",
            [
                _last_run(
                    "promote",
                    f"Creation time of the newest promote ({_stem(PROMOTE_WORKFLOW)}) run. "
                    + _IDEMPOTENCY_NOTE,
                    ("PromotionValidationNotDispatched", "PromotionValidationWorkflowFailing"),
                ),
                _last_run(
                    "build",
                    f"Creation time of the newest build ({_stem(BUILD_WORKFLOW)}) run.",
                    ("PromotionBuildFailing", "PromotionArtifactMissing"),
                ),
                _recent_runs(),
            ],
        ),
        (
            "Sources",
            [_sources_up(), _source_errors(), _github_budget(), _github_reset(), _last_poll()],
        ),
        (DORA_ROW, _dora_panels()),
    ]


def overview() -> grafana.Dashboard:
    builder = (
        dashboard_builders.Dashboard(OVERVIEW_TITLE)
        .uid(OVERVIEW_UID)
        .description("Where each change is in the promotion pipeline, and why it is stuck.")
        .tags(["promotion", "flux"])
        .refresh("1m")
        .time("now-24h", "now")
        .tooltip(grafana.DashboardCursorSync.CROSSHAIR)
        .variables(_variables())
        .link(dashboard_builders.DashboardLink("Runbook").url(DEFAULT_RUNBOOK_URL))
        .annotation(_stage_changes())
    )
    for title, panels in _sections():
        builder.with_row(dashboard_builders.Row(title))
        for panel in panels:
            builder.with_panel(panel)
    dashboard = builder.build()
    # Grafana needs ids unique within the dashboard; the builders leave every id at 0.
    for panel_id, built in enumerate(dashboard.panels or [], start=1):
        built.id_val = panel_id
    return dashboard


def _panels(dashboard: grafana.Dashboard) -> list[grafana.Panel]:
    return [panel for panel in dashboard.panels or [] if isinstance(panel, grafana.Panel)]


def _queries(dora: bool) -> list[tuple[str, str]]:
    dora_titles = {panel.build().title for panel in _dora_panels()}
    return [
        (panel.title or "", target.expr)
        for panel in _panels(overview())
        for target in panel.targets or []
        if isinstance(target, PrometheusQuery) and (panel.title in dora_titles) == dora
    ]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the overview but the DORA row's, with
    `$pipeline` left in.

    `${datasource}` appears in datasource references only, never in PromQL. No query uses
    Grafana's interval variables, so `substitute(query, pipeline)` gives an instant query.
    Two need history: the source error rate wants two scrapes within 5m, the canary failure
    rate one result within the canary window.
    """
    return _queries(dora=False)


def dora_panel_queries() -> list[tuple[str, str]]:
    """The DORA row's queries: they read recorded series, which need the rules and history."""
    return _queries(dora=True)


def substitute(query: str, pipeline: str) -> str:
    """The query as Grafana sends it with `pipeline` selected."""
    return query.replace("${pipeline}", pipeline).replace("$pipeline", pipeline)


# --- Files ----------------------------------------------------------------------------------

_DASHBOARDS: dict[str, Callable[[], grafana.Dashboard]] = {OVERVIEW_FILE: overview}

CONFIGMAP_HEADER = (
    "# Generated by `promotion-exporter generate dashboards`; do not edit.\n"
    "# One ConfigMap per dashboard, for Grafana's dashboard sidecar.\n"
)


def to_json(dashboard: grafana.Dashboard) -> str:
    return json.dumps(dashboard, cls=JSONEncoder, indent=2) + "\n"


def configmap(file_name: str, dashboard_json: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{file_name.removesuffix('.json')}-dashboard",
            "namespace": NAMESPACE,
            "labels": {SIDECAR_LABEL: "1", "app.kubernetes.io/name": "promotion-exporter"},
            "annotations": {FOLDER_ANNOTATION: FOLDER},
        },
        "data": {file_name: dashboard_json},
    }


def render_files() -> dict[str, str]:
    dashboards = {name: to_json(build()) for name, build in _DASHBOARDS.items()}
    configmaps = [configmap(name, text) for name, text in dashboards.items()]
    manifest = yamlfile.dump(*configmaps)
    return {**dashboards, CONFIGMAP_FILE: CONFIGMAP_HEADER + manifest}
