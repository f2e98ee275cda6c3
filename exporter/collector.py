"""The Prometheus collector: fresh metric families from the latest state on every scrape.

No I/O happens here; the poller refreshes the state on its own timer. Tags, shas and digests
appear only as labels of promotion_version_info, so series stay bounded by pipelines,
stages, clusters, canary checks and the five Kustomization history entries Flux keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.model import PipelineState, State
from exporter.poller import Poller
from exporter.snapshot import ErrorReason

POLL_NOTE = "Refreshed by the exporter's own poll timer, not per scrape."


@dataclass(frozen=True)
class MetricSpec:
    name: str  # the exposed family name (counters without the _total suffix)
    type: str  # gauge | counter
    help: str
    labels: tuple[str, ...]

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.type == "counter" else self.name


def _spec(name: str, type_: str, help_: str, *labels: str) -> MetricSpec:
    return MetricSpec(name, type_, help_, labels)


METRICS = {
    spec.name: spec
    for spec in (
        _spec(
            "promotion_version_info",
            "gauge",
            "The artifact at each stage: build = newest built, integration/live = deployed, "
            "validated = newest with validated-<sha>, release = newest stable X.Y.Z.",
            "pipeline",
            "stage",
            "version",
            "revision",
            "digest",
        ),
        _spec(
            "promotion_version_prerelease",
            "gauge",
            "1 when the stage's version is a semver pre-release (X.Y.Z-rc.N) as Flux parses it, "
            "0 when it is a stable X.Y.Z; absent when the tag is no semver (a validated-<sha> "
            "pin) or unknown.",
            "pipeline",
            "stage",
        ),
        _spec(
            "promotion_lag_seconds",
            "gauge",
            "Age of the oldest build that has not reached the stage yet; 0 when current.",
            "pipeline",
            "stage",
        ),
        _spec(
            "promotion_validation_staleness_seconds",
            "gauge",
            "Seconds since integration applied its artifact while that artifact has no "
            "validated-<sha> tag; 0 once validated.",
            "pipeline",
        ),
        _spec(
            "promotion_artifact_created_timestamp_seconds",
            "gauge",
            "Build time (org.opencontainers.image.created) of the artifact at each stage.",
            "pipeline",
            "stage",
        ),
        _spec(
            "promotion_applied_timestamp_seconds",
            "gauge",
            "When the stage's Kustomization first reconciled its current revision.",
            "pipeline",
            "stage",
        ),
        _spec(
            "promotion_commit_timestamp_seconds",
            "gauge",
            "Committer date of the git commit of the artifact at each stage, from GitHub; absent "
            "when the commit is not among the recent commits read.",
            "pipeline",
            "stage",
        ),
        _spec(
            "promotion_integration_applied_timestamp_seconds",
            "gauge",
            "When the integration cluster first applied the artifact now at a later stage "
            "(validated, release, live), from its Kustomization history: the start of the "
            "integration-to-live hop. Absent once integration's history no longer holds it.",
            "pipeline",
            "stage",
        ),
        _spec(
            "promotion_kustomization_history_first_reconciled_timestamp_seconds",
            "gauge",
            "firstReconciled of each of the stage Kustomization's last five history entries; "
            "entry 0 is the newest. No revision label, so series stay bounded.",
            "pipeline",
            "stage",
            "entry",
        ),
        _spec(
            "promotion_kustomization_history_last_reconciled_timestamp_seconds",
            "gauge",
            "lastReconciled of each of the stage Kustomization's last five history entries; "
            "entry 0 is the newest.",
            "pipeline",
            "stage",
            "entry",
        ),
        _spec(
            "promotion_stage_rolled_back",
            "gauge",
            "1 when the stage runs a pin, or an artifact built before another one its "
            "Kustomization history shows it ran (a rollback); 0 otherwise; absent while unknown.",
            "pipeline",
            "stage",
        ),
        _spec(
            "promotion_stage_cluster_info",
            "gauge",
            "The cluster each pipeline stage runs in, for joining cluster-wide series (canary "
            "checks) to a pipeline's stage.",
            "pipeline",
            "stage",
            "cluster",
        ),
        _spec(
            "promotion_tree_node_status",
            "gauge",
            "State set of each debugging-tree node: 1 for the node's current status "
            "(ok, failing or unknown while a source is down).",
            "pipeline",
            "tree",
            "node",
            "status",
        ),
        _spec(
            "promotion_registry_tags",
            "gauge",
            "Tags listed in the artifact repository.",
            "pipeline",
        ),
        _spec(
            "promotion_build_outranked",
            "gauge",
            "1 when the newest build is outranked by a higher version on an older artifact "
            "(a rollback by re-tagging, or an RC whose older sibling got the stable tag): "
            "Flux selects the higher one, so this is no fault and no alert.",
            "pipeline",
        ),
        _spec(
            "promotion_registry_artifacts",
            "gauge",
            "Distinct manifests carrying a pipeline tag.",
            "pipeline",
        ),
        _spec(
            "promotion_registry_ignored_tags",
            "gauge",
            "Tags matching none of the pipeline's tag patterns, ignored.",
            "pipeline",
        ),
        _spec(
            "promotion_canary_check_healthy",
            "gauge",
            "1 when the canary check's last result passed, 0 when it failed.",
            "cluster",
            "namespace",
            "canary",
            "check",
        ),
        _spec(
            "promotion_canary_check_uptime_ratio",
            "gauge",
            "Passed share of the check's runs over the last hour, from canary-checker's "
            "uptime1h; absent when it has no data.",
            "cluster",
            "namespace",
            "canary",
            "check",
        ),
        _spec(
            "promotion_canary_last_check_timestamp_seconds",
            "gauge",
            "When canary-checker last ran the Canary (status.lastCheck); frozen when "
            "canary-checker stops. Absent before its first run.",
            "cluster",
            "namespace",
            "canary",
        ),
        _spec(
            "promotion_canary_interval_seconds",
            "gauge",
            "Seconds between the Canary's runs from spec.schedule (for a cron, its longest "
            "gap) or spec.interval; absent when neither gives a period.",
            "cluster",
            "namespace",
            "canary",
        ),
        _spec(
            "promotion_kubernetes_object_present",
            "gauge",
            "1 when a Flux or canary-checker object the pipeline needs exists, 0 when it "
            "or its CRD is missing.",
            "cluster",
            "kind",
            "namespace",
            "name",
        ),
        _spec("promotion_helmreleases", "gauge", "HelmReleases in the cluster.", "cluster"),
        _spec("promotion_helmreleases_ready", "gauge", "HelmReleases with Ready=True.", "cluster"),
        _spec(
            "promotion_workflow_last_run_timestamp_seconds",
            "gauge",
            "Creation time of the newest run of the build or promote workflow.",
            "pipeline",
            "repository",
            "workflow",
            "role",
        ),
        _spec(
            "promotion_workflow_recent_runs",
            "gauge",
            "Recent runs of the build or promote workflow read on the last poll, by "
            "conclusion (or status while running).",
            "pipeline",
            "repository",
            "workflow",
            "role",
            "conclusion",
        ),
        _spec(
            "promotion_commit_statuses",
            "gauge",
            "Commit statuses on the newest watched commit, by state.",
            "pipeline",
            "repository",
            "state",
        ),
        _spec(
            "promotion_github_rate_limit_remaining",
            "gauge",
            "GitHub API requests left in the current rate-limit window.",
        ),
        _spec(
            "promotion_github_rate_limit_limit",
            "gauge",
            "GitHub API requests allowed per rate-limit window.",
        ),
        _spec(
            "promotion_github_rate_limit_reset_timestamp_seconds",
            "gauge",
            "When the GitHub rate-limit window resets.",
        ),
        _spec(
            "promotion_source_up",
            "gauge",
            "1 when the last poll of the source succeeded; 0 when it failed for any reason "
            "(its facts are then unknown).",
            "kind",
            "name",
        ),
        _spec(
            "promotion_source_last_success_timestamp_seconds",
            "gauge",
            "When the source was last polled successfully.",
            "kind",
            "name",
        ),
        _spec(
            "promotion_source_last_attempt_timestamp_seconds",
            "gauge",
            "When the last poll of the source that ran to completion, up or down, started. "
            "It stops advancing while a poll hangs past its deadline (PromotionExporterStale).",
            "kind",
            "name",
        ),
        _spec(
            "promotion_poll_interval_seconds",
            "gauge",
            "The configured poll interval, for judging how stale a source is.",
        ),
        _spec(
            "promotion_source_poll_duration_seconds",
            "gauge",
            "How long the last poll of the source took.",
            "kind",
            "name",
        ),
        _spec(
            "promotion_source_errors",
            "counter",
            "Failed polls of the source, by reason.",
            "kind",
            "name",
            "reason",
        ),
        _spec(
            "promotion_pipeline_source_info",
            "gauge",
            "The sources each pipeline reads, for joining source health to pipelines.",
            "pipeline",
            "kind",
            "name",
        ),
        _spec(
            "promotion_last_poll_timestamp_seconds", "gauge", "When the last complete poll started."
        ),
        _spec("promotion_polls", "counter", "Complete polls since the exporter started."),
        _spec("promotion_exporter_build_info", "gauge", "The exporter's version.", "version"),
    )
}


class _Families:
    """Creates each family once per scrape, on first use, with HELP and labels from METRICS."""

    def __init__(self) -> None:
        self.families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

    def add(self, name: str, labels: tuple[str, ...] | list[str], value: float) -> None:
        family = self.families.get(name)
        if family is None:
            spec = METRICS[name]
            kind: type[CounterMetricFamily | GaugeMetricFamily] = (
                CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
            )
            family = kind(name, f"{spec.help} {POLL_NOTE}", labels=list(spec.labels))
            self.families[name] = family
        family.add_metric(list(labels), value)


class PromotionCollector(Collector):
    def __init__(self, poller: Poller) -> None:
        self.poller = poller

    def collect(self) -> Iterator[Metric]:
        out = _Families()
        out.add("promotion_exporter_build_info", (__version__,), 1)
        state = self.poller.state  # read once: the poller may swap it during the scrape
        out.add("promotion_polls", (), state.polls if state is not None else 0)
        if state is not None:
            _export_errors(out, state)
            _export_state(out, state)
        yield from out.families.values()


def _export_errors(out: _Families, state: State) -> None:
    for kind, name in sorted({(status.kind, status.name) for status in state.sources}):
        for reason in ErrorReason:
            count = state.source_errors.get((kind, name, reason.value), 0)
            out.add("promotion_source_errors", (kind, name, reason.value), count)


def _export_state(out: _Families, state: State) -> None:
    out.add("promotion_last_poll_timestamp_seconds", (), state.taken_at)
    if state.interval is not None:
        out.add("promotion_poll_interval_seconds", (), state.interval)
    _export_sources(out, state)
    for pipeline in state.pipelines:
        _export_pipeline(out, pipeline)
    for check in state.canary_checks:
        labels = (check.cluster, check.namespace, check.canary, check.check)
        if check.healthy is not None:
            out.add("promotion_canary_check_healthy", labels, 1 if check.healthy else 0)
        if check.uptime_ratio is not None:
            out.add("promotion_canary_check_uptime_ratio", labels, check.uptime_ratio)
    _export_canaries(out, state)
    for obj in state.objects:
        out.add(
            "promotion_kubernetes_object_present",
            (obj.cluster, obj.kind, obj.namespace, obj.name),
            1 if obj.present else 0,
        )
    for cluster, counts in state.helm_releases.items():
        out.add("promotion_helmreleases", (cluster,), counts.total)
        out.add("promotion_helmreleases_ready", (cluster,), counts.ready)
    _export_github(out, state)


def _export_canaries(out: _Families, state: State) -> None:
    for canary in state.canaries:
        labels = (canary.cluster, canary.namespace, canary.canary)
        if canary.last_check is not None:
            out.add("promotion_canary_last_check_timestamp_seconds", labels, canary.last_check)
        if canary.interval_seconds is not None:
            out.add("promotion_canary_interval_seconds", labels, canary.interval_seconds)


def _export_sources(out: _Families, state: State) -> None:
    for status in state.sources:
        labels = (status.kind, status.name)
        out.add("promotion_source_up", labels, 1 if status.up else 0)
        out.add("promotion_source_poll_duration_seconds", labels, status.duration_seconds)
        if status.last_success is not None:
            out.add("promotion_source_last_success_timestamp_seconds", labels, status.last_success)
        if status.last_attempt is not None:
            out.add("promotion_source_last_attempt_timestamp_seconds", labels, status.last_attempt)


def _export_pipeline(out: _Families, pipeline: PipelineState) -> None:
    name = pipeline.name
    for kind, source in pipeline.sources:
        out.add("promotion_pipeline_source_info", (name, kind, source), 1)
    for version in pipeline.versions:
        out.add(
            "promotion_version_info",
            (name, version.stage, version.version, version.revision, version.digest),
            1,
        )
        if version.prerelease is not None:
            out.add("promotion_version_prerelease", (name, version.stage), int(version.prerelease))
    for stage, lag in pipeline.lags.items():
        out.add("promotion_lag_seconds", (name, stage), lag)
    if pipeline.validation_staleness is not None:
        out.add("promotion_validation_staleness_seconds", (name,), pipeline.validation_staleness)
    for stage, created in pipeline.created.items():
        out.add("promotion_artifact_created_timestamp_seconds", (name, stage), created)
    for stage, applied in pipeline.applied.items():
        out.add("promotion_applied_timestamp_seconds", (name, stage), applied)
    _export_delivery(out, pipeline)
    for tree in pipeline.trees:
        for node in tree.nodes:
            for status in ("ok", "failing", "unknown"):
                out.add(
                    "promotion_tree_node_status",
                    (name, tree.tree.id, node.node.id, status),
                    1 if node.status == status else 0,
                )
    if pipeline.registry is not None:
        out.add("promotion_build_outranked", (name,), 1 if pipeline.outranked else 0)
        out.add("promotion_registry_tags", (name,), pipeline.registry.tags)
        out.add("promotion_registry_artifacts", (name,), pipeline.registry.artifacts)
        out.add("promotion_registry_ignored_tags", (name,), pipeline.registry.ignored_tags)


def _export_delivery(out: _Families, pipeline: PipelineState) -> None:
    """The timestamps the DORA recording rules read; all from sources, so restart-safe."""
    name = pipeline.name
    for stage, committed in pipeline.committed.items():
        out.add("promotion_commit_timestamp_seconds", (name, stage), committed)
    for stage, applied in pipeline.integration_applied.items():
        out.add("promotion_integration_applied_timestamp_seconds", (name, stage), applied)
    for stage, entries in pipeline.history.items():
        for entry, times in enumerate(entries):
            labels = (name, stage, str(entry))
            if times.first_reconciled is not None:
                out.add(
                    "promotion_kustomization_history_first_reconciled_timestamp_seconds",
                    labels,
                    times.first_reconciled,
                )
            if times.last_reconciled is not None:
                out.add(
                    "promotion_kustomization_history_last_reconciled_timestamp_seconds",
                    labels,
                    times.last_reconciled,
                )
    for stage, rolled_back in pipeline.rolled_back.items():
        out.add("promotion_stage_rolled_back", (name, stage), int(rolled_back))
    for stage, cluster in pipeline.clusters.items():
        out.add("promotion_stage_cluster_info", (name, stage, cluster), 1)


def _export_github(out: _Families, state: State) -> None:
    if state.rate_limit is not None:
        out.add("promotion_github_rate_limit_remaining", (), state.rate_limit.remaining)
        out.add("promotion_github_rate_limit_limit", (), state.rate_limit.limit)
        out.add("promotion_github_rate_limit_reset_timestamp_seconds", (), state.rate_limit.reset)
    for github in state.github:
        where = (github.pipeline, github.repository)
        for workflow in github.workflows:
            labels = (*where, workflow.workflow, workflow.role)
            if workflow.last_run_created is not None:
                out.add(
                    "promotion_workflow_last_run_timestamp_seconds",
                    labels,
                    workflow.last_run_created,
                )
            for conclusion, count in sorted(workflow.conclusions.items()):
                out.add("promotion_workflow_recent_runs", (*labels, conclusion), count)
        for status_state, count in sorted(github.head_statuses.items()):
            out.add("promotion_commit_statuses", (*where, status_state), count)
