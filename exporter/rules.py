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

import yaml

from exporter import dora
from exporter.config import parse_duration
from exporter.trees import TREES, Node, Tree

PLAIN_RULES_FILE = "promotion.rules.yml"
PROMETHEUS_RULE_FILE = "promotion-prometheusrule.yaml"
DEFAULT_RUNBOOK_URL = (
    "https://github.com/promotion-exporter/promotion-exporter/blob/main/docs/runbook.md"
)
DEFAULT_DASHBOARD_URL = "http://grafana.local/d/promotion-overview/promotion-pipeline"
_STAGE_PAIRS = {"integration": ("build", "integration"), "live": ("release", "live")}


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
    """A non-tree alert. Its runbook text lives here, beside its rule."""

    alert: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    meaning: str
    commands: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()


def _version(pipeline_label: str, stage: str) -> str:
    """Template text that looks up a stage's version when the alert is rendered."""
    query = f'promotion_version_info{{pipeline="%s",stage="{stage}"}}'
    return (
        f"{{{{ with printf `{query}` {pipeline_label} | query }}}}"
        '{{ . | first | label "version" }}{{ else }}none{{ end }}'
    )


_CANARY_STALE_MINIMUM = 900  # seconds
_CANARY_STALE_RUNS = 3


def _canary_stale_expr() -> str:
    """Silent past max(15m, 3 runs), or missing, on a cluster the exporter can read. A Canary
    without a known period gets the minimum; a missing one has value 0 and no lastCheck."""
    age = "time() - promotion_canary_last_check_timestamp_seconds"
    minimum = _CANARY_STALE_MINIMUM
    return (
        f"(\n  ({age})\n  > (\n"
        f"    clamp_min({_CANARY_STALE_RUNS} * promotion_canary_interval_seconds, {minimum})\n"
        f"    or 0 * promotion_canary_last_check_timestamp_seconds + {minimum}\n  )\n"
        "  or\n"
        "  max without (kind, name) (label_replace(\n"
        '    promotion_kubernetes_object_present{kind="Canary"} == 0, '
        '"canary", "$1", "name", "(.*)"\n  ))\n)\n'
        "and on (job, instance, cluster)\n"
        'label_replace(promotion_source_up{kind="cluster"} == 1, "cluster", "$1", "name", "(.*)")'
    )


def symptoms(options: RuleOptions) -> tuple[Symptom, ...]:
    lag = parse_duration(options.lag_threshold)
    staleness = parse_duration(options.staleness_threshold)
    ratio = options.canary_failure_ratio
    job = options.job
    return (
        Symptom(
            "PromotionLagHigh",
            "critical",
            f"max by (pipeline) (promotion_lag_seconds) > {lag:g}",
            options.for_("PromotionLagHigh", options.symptom_for),
            "A build has waited too long to reach the end of the pipeline.",
            "Pipeline {{ $labels.pipeline }}: the oldest build not yet promoted through every "
            "stage is {{ $value | humanizeDuration }} old (threshold "
            f"{options.lag_threshold}). Build {_version('$labels.pipeline', 'build')}, live "
            f"{_version('$labels.pipeline', 'live')}.",
            "The oldest build that has not reached a stage is older than the threshold. This is "
            "the page: the cause alert of the tree that is stuck says where.",
            ("promotion-exporter diagnose --config.file <config>",),
            ("Any node of either tree; look for the Promotion* cause alert of the pipeline.",),
        ),
        Symptom(
            "PromotionValidationStale",
            "warning",
            f"promotion_validation_staleness_seconds > {staleness:g}",
            options.for_("PromotionValidationStale", "0s"),
            "Integration runs an artifact that has not been validated for too long.",
            "Pipeline {{ $labels.pipeline }}: integration applied "
            f"{_version('$labels.pipeline', 'integration')} "
            "{{ $value | humanizeDuration }} ago and it still has no validated-<sha> tag "
            f"(threshold {options.staleness_threshold}).",
            "Integration applied its current artifact long ago, and it still has no "
            "validated-<sha> tag: the validation dispatch or the tag workflow is not working.",
            ("gh run list --workflow=tag-validated-artifact.yaml --limit=5",),
            (
                "repository_dispatch not received by GHA: the token lacks repo scope.",
                "fluxcd/flux2#3933: githubdispatch dropped success events.",
            ),
        ),
        Symptom(
            "PromotionLivePrerelease",
            "critical",
            # The exporter's parse, as Flux parses versions, not a tag regex: a validated-<sha>
            # pin is no semver at all and has no series.
            'promotion_version_prerelease{stage="live"} == 1',
            options.for_("PromotionLivePrerelease", options.symptom_for),
            "Live runs a pre-release version.",
            "Pipeline {{ $labels.pipeline }}: live runs "
            f"{_version('$labels.pipeline', 'live')}, a pre-release. "
            "Live must follow stable tags only (>= 0.0.0).",
            "The live cluster has applied a pre-release (X.Y.Z-rc.N): its semver constraint "
            "admits pre-releases.",
            (
                "KUBECONFIG=~/.kube/live.yaml kubectl get ocirepository -n flux-system -o yaml "
                "| grep semver",
            ),
            ("Live picks up wrong version: the constraint must be >= 0.0.0, not >= 0.0.0-0.",),
        ),
        Symptom(
            "PromotionCanaryCheckFailing",
            "critical",
            "promotion_canary_check_healthy == 0",
            options.for_("PromotionCanaryCheckFailing", options.canary_for),
            "A canary-checker health check is failing.",
            "Canary {{ $labels.namespace }}/{{ $labels.canary }} check {{ $labels.check }} in "
            "cluster {{ $labels.cluster }} is failing.",
            "The seed's CanaryCheckFailure: a platform-validation check failed for the whole "
            "for: window.",
            (
                "KUBECONFIG=~/.kube/<cluster>.yaml kubectl get canaries -n monitoring",
                "KUBECONFIG=~/.kube/<cluster>.yaml kubectl describe canary platform-validation "
                "-n monitoring",
            ),
            (
                "kubernetes-api: the Kubernetes API does not answer 200 or 401.",
                "flux-pods-healthy: a Flux pod is not Running and Ready.",
            ),
        ),
        Symptom(
            "PromotionCanaryFailureRateHigh",
            "warning",
            f"1 - avg_over_time(promotion_canary_check_healthy[{options.canary_window}]) "
            f"> {ratio:g}",
            options.for_("PromotionCanaryFailureRateHigh", "0s"),
            "A canary-checker health check fails often.",
            "Canary {{ $labels.namespace }}/{{ $labels.canary }} check {{ $labels.check }} in "
            "cluster {{ $labels.cluster }} failed {{ $value | humanizePercentage }} of the "
            f"time over {options.canary_window} (threshold {ratio:.0%}).",
            "The seed's CanaryCheckHighFailureRate: a check flaps.",
            (
                "KUBECONFIG=~/.kube/<cluster>.yaml kubectl describe canary platform-validation "
                "-n monitoring",
            ),
            ("An intermittently failing Flux pod or API endpoint.",),
        ),
        Symptom(
            "PromotionCanaryStale",
            "warning",
            _canary_stale_expr(),
            options.for_("PromotionCanaryStale", options.symptom_for),
            "A configured Canary has stopped running, or is missing.",
            "Canary {{ $labels.namespace }}/{{ $labels.canary }} in cluster "
            "{{ $labels.cluster }} {{ if gt $value 0.0 }}last ran "
            "{{ $value | humanizeDuration }} ago{{ else }}is missing, or its CRD is not "
            "installed{{ end }}: its checks' last results are not current.",
            "canary-checker keeps a Canary's last status when it stops running it, so its checks "
            "would read healthy forever. This fires when status.lastCheck is older than "
            f"{_CANARY_STALE_MINIMUM // 60}m or {_CANARY_STALE_RUNS} runs of its schedule, "
            "whichever is longer, or when the configured Canary (or the Canary CRD) is gone, "
            "while the exporter can read its cluster. A cluster that is down fires "
            "PromotionSourceDown instead.",
            (
                "KUBECONFIG=~/.kube/<cluster>.yaml kubectl get canaries -A",
                "KUBECONFIG=~/.kube/<cluster>.yaml kubectl -n canary-checker get pods",
                "KUBECONFIG=~/.kube/<cluster>.yaml kubectl -n canary-checker logs "
                "deploy/canary-checker",
            ),
            (
                "canary-checker is not running, or cannot patch Canary status (RBAC).",
                "The Canary was deleted or renamed, or canary-checker was uninstalled.",
                "The Canary has no spec.schedule or spec.interval, so it never runs.",
            ),
        ),
        Symptom(
            "PromotionExporterDown",
            "warning",
            f'up{{job="{job}"}} == 0 or absent(up{{job="{job}"}})',
            options.for_("PromotionExporterDown", options.exporter_down_for),
            "The promotion exporter is not being scraped.",
            "Prometheus cannot scrape job {{ $labels.job }}{{ with $labels.instance }} at "
            "{{ . }}{{ end }}: nothing watches the promotion pipeline.",
            "Prometheus has no data from the exporter, so no pipeline alert can fire. This is how "
            "a broken pipeline goes unnoticed for months.",
            (
                "kubectl -n monitoring get pods -l app.kubernetes.io/name=promotion-exporter",
                "kubectl -n monitoring logs deploy/promotion-exporter",
            ),
            ("The exporter crashed or cannot start: look for a config error in its log.",),
        ),
        Symptom(
            "PromotionSourceDown",
            "warning",
            "(promotion_source_up == 0) * on (job, instance, kind, name) group_right () "
            "promotion_pipeline_source_info",
            options.for_("PromotionSourceDown", options.source_down_for),
            "The exporter cannot poll one of a pipeline's sources.",
            "Pipeline {{ $labels.pipeline }}: the {{ $labels.kind }} source {{ $labels.name }} "
            "cannot be polled, so the facts it provides are unknown.",
            "The last poll of the source failed (unreachable, 5xx, 401/403 or rate-limited). Tree "
            "nodes that need it are unknown and fire nothing until it is back.",
            ("kubectl -n monitoring logs deploy/promotion-exporter | grep '<name>'",),
            (
                "Token scopes: read:packages for GHCR; repo or actions read for GitHub.",
                "RBAC: the exporter's ClusterRole must allow get/list on Flux objects.",
            ),
        ),
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
    first, second = _STAGE_PAIRS[tree.id]
    return (
        'Pipeline {{ $labels.pipeline }} is stuck at "' + node.question + '" in the '
        f"{tree.title} tree. {node.meaning} {first.capitalize()} "
        f"{_version('$labels.pipeline', first)}, {second} {_version('$labels.pipeline', second)}."
        " Run: promotion-exporter diagnose"
    )


def _annotations(options: RuleOptions, alert: str, summary: str, description: str) -> dict:
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


def _rule(alert: str, expr: str, for_: str, labels: dict, annotations: dict) -> dict:
    rule: dict[str, Any] = {"alert": alert, "expr": expr}
    if parse_duration(for_) > 0:
        rule["for"] = for_
    rule["labels"] = labels
    rule["annotations"] = annotations
    return rule


def _tree_group(tree: Tree, options: RuleOptions) -> dict:
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


def _symptom_group(name: str, items: tuple[Symptom, ...], options: RuleOptions) -> dict:
    rules = [
        _rule(
            s.alert,
            s.expr,
            s.for_,
            {"severity": s.severity},
            _annotations(options, s.alert, s.summary, s.description),
        )
        for s in items
    ]
    return {"name": name, "rules": rules}


HEALTH_ALERTS = ("PromotionExporterDown", "PromotionSourceDown")


def rule_groups(options: RuleOptions) -> list[dict]:
    options.validate()
    all_symptoms = symptoms(options)
    return [
        *(_tree_group(tree, options) for tree in TREES),
        _symptom_group(
            "promotion-symptoms",
            tuple(s for s in all_symptoms if s.alert not in HEALTH_ALERTS),
            options,
        ),
        _symptom_group(
            "promotion-health", tuple(s for s in all_symptoms if s.alert in HEALTH_ALERTS), options
        ),
        *dora.dora_groups(options.dora_failure_window),
    ]


def prometheus_rule(groups: list[dict]) -> dict:
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


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings so the PromQL stays readable in review."""


def _str_presenter(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str_presenter)

HEADER = (
    "# Generated by `promotion-exporter generate rules`; do not edit.\n"
    "# Regenerate with your own thresholds: promotion-exporter generate rules --help\n"
)


def dump(document: dict) -> str:
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


def render_files(options: RuleOptions) -> dict[str, str]:
    groups = rule_groups(options)
    return {
        PLAIN_RULES_FILE: dump({"groups": groups}),
        PROMETHEUS_RULE_FILE: dump(prometheus_rule(groups)),
    }
