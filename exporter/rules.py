"""The rules pack, generated from the trees: cause alerts, symptoms and exporter health.

`promotion-exporter generate rules` writes the shipped files with the defaults below; a user
regenerates them with their own thresholds. A cause alert fires for the first failing node of
its tree only, and never while an earlier node has been failing or unknown for the whole
suppression window: a one-poll blip of an earlier node (kustomize-controller reports Ready=Unknown
at the start of every reconcile, a poll can fail) must not make the later alert's series vanish,
since Prometheus drops a pending alert whose series is absent for one evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter import dora, yamlfile
from exporter.config import parse_duration
from exporter.seed import (
    CANARY_STALE_MINIMUM_SECONDS,
    CANARY_STALE_RUNS,
    STAGE_PAIRS,
    STAGE_SEMVER,
    SYMPTOMS,
    SymptomText,
)
from exporter.trees import TREES, Node, Tree

_Yaml = dict[str, Any]  # a mapping of a rule file

PLAIN_RULES_FILE = "promotion.rules.yml"
PROMETHEUS_RULE_FILE = "promotion-prometheusrule.yaml"
DEFAULT_RUNBOOK_URL = (
    "https://github.com/promotion-exporter/promotion-exporter/blob/main/docs/runbook.md"
)
DEFAULT_DASHBOARD_URL = "http://grafana.local/d/promotion-overview/promotion-pipeline"


@dataclass(frozen=True)
class RuleOptions:
    lag_threshold: str = "4h"
    staleness_threshold: str = "2h"
    canary_failure_ratio: float = 0.2
    canary_window: str = "15m"
    canary_for: str = "2m"
    source_down_for: str = "5m"
    exporter_down_for: str = "5m"
    symptom_for: str = "5m"
    job: str = "promotion-exporter"
    runbook_url: str = DEFAULT_RUNBOOK_URL
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    node_for: dict[str, str] = field(default_factory=dict)  # alert name -> for
    for_override: str | None = None  # every for: at once, e.g. 0s in end-to-end tests
    # How long an earlier node must stay not-ok before it silences later ones: a few scrape
    # intervals, and shorter than every tree for:, so that an earlier node that keeps failing
    # silences a later alert before either fires. 0s silences at once.
    suppression_window: str = "3m"
    # How long after a live deployment a failure or a rollback still counts against it.
    dora_failure_window: str = "1h"

    def validate(self) -> None:
        durations = [
            self.lag_threshold,
            self.staleness_threshold,
            self.canary_window,
            self.canary_for,
            self.source_down_for,
            self.exporter_down_for,
            self.symptom_for,
            *self.node_for.values(),
        ]
        if self.for_override is not None:
            durations.append(self.for_override)
        for text in (*durations, self.suppression_window):
            parse_duration(text)
        if parse_duration(self.dora_failure_window) < dora.EVENTS_INTERVAL_SECONDS:
            raise ValueError("--dora-failure-window must be at least 5m, the events interval")
        if not 0 < self.canary_failure_ratio < 1:
            raise ValueError("--canary-failure-ratio must be between 0 and 1")
        unknown = set(self.node_for) - {node.alert for tree in TREES for node in tree.nodes}
        if unknown:
            raise ValueError(f"--node-for names no tree alert: {', '.join(sorted(unknown))}")
        self._validate_window()

    def _validate_window(self) -> None:
        # A tree for: at or below the window would let a later alert fire, or keep firing, for
        # up to the window while an earlier node fails: two cause alerts at once.
        window = self.window()
        if window is None:
            return
        for tree in TREES:
            for node in tree.nodes:
                for_ = self.for_(node.alert, node.for_)
                if parse_duration(for_) <= parse_duration(window):
                    raise ValueError(
                        f"--suppression-window {self.suppression_window} must be shorter than "
                        f"every tree for: ({node.alert} has {for_})"
                    )

    def window(self) -> str | None:
        """The suppression window in use; None to silence at once, also when every for: is
        overridden to 0s, since alerts without a for: have no pending state a blip could reset."""
        if self.for_override is not None and parse_duration(self.for_override) == 0:
            return None
        return self.suppression_window if parse_duration(self.suppression_window) > 0 else None

    def for_(self, alert: str, default: str) -> str:
        if self.for_override is not None:
            return self.for_override
        return self.node_for.get(alert, default)


@dataclass(frozen=True)
class Symptom:
    """A non-tree alert: its catalogue entry (exporter.seed) and its rule."""

    text: SymptomText
    expr: str
    for_: str
    description: str

    @property
    def alert(self) -> str:
        return self.text.alert


@dataclass(frozen=True)
class _SymptomRule:
    expr: str
    for_: str  # before --node-for and --for-override
    description: str


def _version(pipeline_label: str, stage: str) -> str:
    """Template text that looks up a stage's version when the alert is rendered."""
    query = f'promotion_version_info{{pipeline="%s",stage="{stage}"}}'
    return (
        f"{{{{ with printf `{query}` {pipeline_label} | query }}}}"
        '{{ . | first | label "version" }}{{ else }}none{{ end }}'
    )


def _canary_stale_expr() -> str:
    """Silent past max(15m, 3 runs), or missing, on a cluster the exporter can read. A Canary
    without a known period gets the minimum; a missing one has value 0 and no lastCheck."""
    age = "time() - promotion_canary_last_check_timestamp_seconds"
    minimum = CANARY_STALE_MINIMUM_SECONDS
    return (
        f"(\n  ({age})\n  > (\n"
        f"    clamp_min({CANARY_STALE_RUNS} * promotion_canary_interval_seconds, {minimum})\n"
        f"    or 0 * promotion_canary_last_check_timestamp_seconds + {minimum}\n  )\n"
        "  or\n"
        "  max without (kind, name) (label_replace(\n"
        '    promotion_kubernetes_object_present{kind="Canary"} == 0, '
        '"canary", "$1", "name", "(.*)"\n  ))\n)\n'
        "and on (job, instance, cluster)\n"
        'label_replace(promotion_source_up{kind="cluster"} == 1, "cluster", "$1", "name", "(.*)")'
    )


_STALE_INTERVALS = 5
_STALE_MINIMUM = 600  # seconds


def _exporter_stale_expr() -> str:
    """No poll of the source ran to completion for max(5 intervals, 10m): the poll hangs."""
    age = "time() - promotion_source_last_attempt_timestamp_seconds"
    bound = f"clamp_min({_STALE_INTERVALS} * promotion_poll_interval_seconds, {_STALE_MINIMUM})"
    return f"({age})\n> ignoring (kind, name) group_left ()\n{bound}"


_CANARY = (
    "Canary {{ $labels.namespace }}/{{ $labels.canary }} check {{ $labels.check }} in "
    "cluster {{ $labels.cluster }}"
)


def _symptom_rules(options: RuleOptions) -> dict[str, _SymptomRule]:
    lag = parse_duration(options.lag_threshold)
    staleness = parse_duration(options.staleness_threshold)
    ratio = options.canary_failure_ratio
    job = options.job
    return {
        "PromotionLagHigh": _SymptomRule(
            f"max by (pipeline) (promotion_lag_seconds) > {lag:g}",
            options.symptom_for,
            "Pipeline {{ $labels.pipeline }}: the oldest build not yet promoted through every "
            "stage is {{ $value | humanizeDuration }} old (threshold "
            f"{options.lag_threshold}). Build {_version('$labels.pipeline', 'build')}, live "
            f"{_version('$labels.pipeline', 'live')}.",
        ),
        "PromotionValidationStale": _SymptomRule(
            f"promotion_validation_staleness_seconds > {staleness:g}",
            "0s",
            "Pipeline {{ $labels.pipeline }}: integration applied "
            f"{_version('$labels.pipeline', 'integration')} "
            "{{ $value | humanizeDuration }} ago and it still has no validated-<sha> tag "
            f"(threshold {options.staleness_threshold}).",
        ),
        "PromotionLivePrerelease": _SymptomRule(
            # The exporter's parse, as Flux parses versions, not a tag regex: a validated-<sha>
            # pin is no semver at all and has no series.
            'promotion_version_prerelease{stage="live"} == 1',
            options.symptom_for,
            "Pipeline {{ $labels.pipeline }}: live runs "
            f"{_version('$labels.pipeline', 'live')}, a pre-release. "
            f"Live must follow stable tags only ({STAGE_SEMVER['live']}).",
        ),
        "PromotionCanaryCheckFailing": _SymptomRule(
            "promotion_canary_check_healthy == 0",
            options.canary_for,
            f"{_CANARY} is failing.",
        ),
        "PromotionCanaryFailureRateHigh": _SymptomRule(
            f"1 - avg_over_time(promotion_canary_check_healthy[{options.canary_window}]) "
            f"> {ratio:g}",
            "0s",
            f"{_CANARY} failed {{{{ $value | humanizePercentage }}}} of the "
            f"time over {options.canary_window} (threshold {ratio:.0%}).",
        ),
        "PromotionCanaryStale": _SymptomRule(
            _canary_stale_expr(),
            options.symptom_for,
            "Canary {{ $labels.namespace }}/{{ $labels.canary }} in cluster "
            "{{ $labels.cluster }} {{ if gt $value 0.0 }}last ran "
            "{{ $value | humanizeDuration }} ago{{ else }}is missing, or its CRD is not "
            "installed{{ end }}: its checks' last results are not current.",
        ),
        "PromotionExporterDown": _SymptomRule(
            f'up{{job="{job}"}} == 0 or absent(up{{job="{job}"}})',
            options.exporter_down_for,
            "Prometheus cannot scrape job {{ $labels.job }}{{ with $labels.instance }} at "
            "{{ . }}{{ end }}: nothing watches the promotion pipeline.",
        ),
        "PromotionSourceDown": _SymptomRule(
            "(promotion_source_up == 0) * on (job, instance, kind, name) group_right () "
            "promotion_pipeline_source_info",
            options.source_down_for,
            "Pipeline {{ $labels.pipeline }}: the {{ $labels.kind }} source {{ $labels.name }} "
            "cannot be polled, so the facts it provides are unknown.",
        ),
        "PromotionExporterStale": _SymptomRule(
            _exporter_stale_expr(),
            options.for_("PromotionExporterStale", "0s"),
            "The {{ $labels.kind }} source {{ $labels.name }} has had no complete poll for "
            "{{ $value | humanizeDuration }}: the facts it feeds are frozen or unknown.",
        ),
    }


def symptoms(options: RuleOptions) -> tuple[Symptom, ...]:
    """The catalogue's alerts in catalogue order, each with its rule."""
    rules = _symptom_rules(options)
    return tuple(
        Symptom(
            text,
            rules[text.alert].expr,
            options.for_(text.alert, rules[text.alert].for_),
            rules[text.alert].description,
        )
        for text in SYMPTOMS
    )


def _tree_expr(tree: Tree, index: int, window: str | None) -> str:
    node = tree.nodes[index]
    selector = f'tree="{tree.id}", node="{node.id}"'
    expr = f'max without (status) (promotion_tree_node_status{{{selector}, status="failing"}} == 1)'
    earlier = "|".join(n.id for n in tree.nodes[:index])
    if earlier:
        expr += f"\nunless on (pipeline)\n{_not_ok(tree, earlier, window)}"
    return expr


def _not_ok(tree: Tree, nodes: str, window: str | None) -> str:
    """Earlier nodes that are not ok: for the whole window, when there is one.

    The "ok" series of the state set is the one series that is 0 for both failing and unknown,
    so its max over the window is 0 only when the node was never ok in it, however it
    alternated between the two. An earlier node that is absent (no github section) yields
    nothing and silences nothing.
    """
    selector = f'tree="{tree.id}", node=~"{nodes}"'
    if window is None:
        return f'(promotion_tree_node_status{{{selector}, status!="ok"}} == 1)'
    return f'(max_over_time(promotion_tree_node_status{{{selector}, status="ok"}}[{window}]) == 0)'


def _tree_description(tree: Tree, node: Node) -> str:
    first, second = STAGE_PAIRS[tree.id]
    return (
        'Pipeline {{ $labels.pipeline }} is stuck at "' + node.question + '" in the '
        f"{tree.title} tree. {node.meaning} {first.capitalize()} "
        f"{_version('$labels.pipeline', first)}, {second} {_version('$labels.pipeline', second)}."
        " Run: promotion-exporter diagnose"
    )


def _annotations(
    options: RuleOptions, alert: str, summary: str, description: str
) -> dict[str, str]:
    return {
        "summary": summary,
        "description": description,
        "runbook_url": f"{options.runbook_url}#{alert.lower()}",
        # Canary and exporter alerts have no pipeline: link the dashboard without one.
        "dashboard_url": (
            f"{options.dashboard_url}"
            "{{ with $labels.pipeline }}?var-pipeline={{ . }}{{ end }}"
        ),
    }


# Two replicas behind one Service are both scraped: each alert is aggregated over the replica
# labels, so identical series page once and replicas one poll apart do not flap. Only
# ExporterDown is about one replica, and keeps its instance.
REPLICA_LABELS = "instance, pod"
_PER_REPLICA_ALERTS = frozenset({"PromotionExporterDown"})


def _across_replicas(alert: str, expr: str) -> str:
    if alert in _PER_REPLICA_ALERTS:
        return expr
    body = expr.replace("\n", "\n  ")
    return f"max without ({REPLICA_LABELS}) (\n  {body}\n)"


def _rule(
    alert: str, expr: str, for_: str, labels: dict[str, str], annotations: dict[str, str]
) -> _Yaml:
    rule: dict[str, Any] = {"alert": alert, "expr": _across_replicas(alert, expr)}
    if parse_duration(for_) > 0:
        rule["for"] = for_
    rule["labels"] = labels
    rule["annotations"] = annotations
    return rule


def _tree_group(tree: Tree, options: RuleOptions) -> _Yaml:
    rules = [
        _rule(
            node.alert,
            _tree_expr(tree, index, options.window()),
            options.for_(node.alert, node.for_),
            {"severity": node.severity},
            _annotations(options, node.alert, node.summary, _tree_description(tree, node)),
        )
        for index, node in enumerate(tree.nodes)
    ]
    return {"name": f"promotion-{tree.id}-tree", "rules": rules}


def _symptom_group(name: str, items: tuple[Symptom, ...], options: RuleOptions) -> _Yaml:
    rules = [
        _rule(
            s.alert,
            s.expr,
            s.for_,
            {"severity": s.text.severity},
            _annotations(options, s.alert, s.text.summary, s.description),
        )
        for s in items
    ]
    return {"name": name, "rules": rules}


def rule_groups(options: RuleOptions) -> list[_Yaml]:
    options.validate()
    all_symptoms = symptoms(options)
    return [
        *(_tree_group(tree, options) for tree in TREES),
        _symptom_group(
            "promotion-symptoms",
            tuple(s for s in all_symptoms if not s.text.health),
            options,
        ),
        _symptom_group(
            "promotion-health", tuple(s for s in all_symptoms if s.text.health), options
        ),
        *dora.dora_groups(options.dora_failure_window),
    ]


def prometheus_rule(groups: list[_Yaml]) -> _Yaml:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "promotion-exporter",
            "labels": {
                "app.kubernetes.io/name": "promotion-exporter",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": groups},
    }


HEADER = (
    "# Generated by `promotion-exporter generate rules`; do not edit.\n"
    "# Regenerate with your own thresholds: promotion-exporter generate rules --help\n"
)


def dump(document: _Yaml) -> str:
    return HEADER + yamlfile.dump(document)


def render_files(options: RuleOptions) -> dict[str, str]:
    groups = rule_groups(options)
    return {
        PLAIN_RULES_FILE: dump({"groups": groups}),
        PROMETHEUS_RULE_FILE: dump(prometheus_rule(groups)),
    }
