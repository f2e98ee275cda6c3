"""One fact per node of exporter.trees: does the pipeline pass that node right now?

Each function answers its node's question for one pipeline, as (True | False | None, what
was seen). `evaluate` runs the guard every node shares first: a node whose sources did not
answer is unknown, so no function here sees a source that is down.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from exporter.artifacts import ArtifactView, parse_revision
from exporter.config import StageConfig
from exporter.snapshot import (
    AlertData,
    CommitStatus,
    KustomizationData,
    Missing,
    ObjectRef,
    OCIRepositoryData,
    ProviderData,
    WorkflowRun,
)
from exporter.trees import Node
from exporter.view import CLOCK_SKEW_SECONDS, PipelineView, is_pin

Fact = bool | None
Finding = tuple[Fact, str]
NodeFact = Callable[[PipelineView], Finding]

# Flux's success event, which the Alert's inclusionList must admit for the dispatch to fire.
RECONCILIATION_FINISHED = "Reconciliation finished in 1m0s, next run in 10m0s"
FAILED_CONCLUSIONS = frozenset(
    {"failure", "cancelled", "timed_out", "action_required", "startup_failure", "stale"}
)
# The run events each Provider type starts the tag workflow with; a manual workflow_dispatch
# is a promotion by hand, never the Alert's doing.
DISPATCH_EVENTS = {"githubdispatch": "repository_dispatch", "github": "status"}
PROVIDER_TYPES = tuple(DISPATCH_EVENTS)
# How a tag workflow shared by pipelines titles its runs, when it sets `run-name:`: the
# githubdispatch event_type `Kustomization/<name>.<namespace>`, or the github Provider's
# commit-status context `kustomization/<name>/<hash>`.
_TITLED_EVENT = re.compile(
    r"kustomization/(?P<name>[a-z0-9][-a-z0-9]*)(?:\.(?P<namespace>[a-z0-9][-a-z0-9]*)|/)",
    re.IGNORECASE,
)


def evaluate(node: Node, view: PipelineView) -> Finding:
    unknown = view.unknown_source(node.reads)
    if unknown is not None:
        return None, unknown
    return NODE_FACTS[node.id](view)


def all_of(*facts: Fact) -> Fact:
    """Kleene AND: one known False decides; otherwise any unknown makes it unknown."""
    if any(fact is False for fact in facts):
        return False
    return None if any(fact is None for fact in facts) else True


# A present object whose status has not the shape we read: unknown, never failing.
UNREADABLE = "the {kind} could not be read (malformed status): unknown"


def describe_missing(kind: str, ref: ObjectRef, missing: Missing) -> str:
    if missing is Missing.CRD_MISSING:
        return f"the {kind} CRD is not installed"
    return f"{kind} {ref.namespace}/{ref.name} does not exist"


# --- Integration tree --------------------------------------------------------------------


def build_succeeded(view: PipelineView) -> Finding:
    commit = view.awaited_commit
    if commit is None:
        return True, "no commit that runs CI touches the watched path"
    if not view.known_github.build_workflow_found:
        return False, f"the build workflow {_build_workflow(view)} was not found"
    runs = view.build_runs_for(commit)
    if not runs:
        return True, f"no build run for {commit.sha[:7]} yet"
    newest = runs[0]
    if newest.status == "completed" and newest.conclusion in FAILED_CONCLUSIONS:
        return False, f"build run {newest.id} for {commit.sha[:7]} ended {newest.conclusion}"
    return True, f"build run {newest.id} for {commit.sha[:7]} is {run_outcome(newest)}"


def artifact_in_registry(view: PipelineView) -> Finding:
    index = view.known_index
    if view.pipeline.github is None:
        newest = index.newest
        if newest is None:
            return False, f"{view.pipeline.artifact} has no artifact"
        return True, f"newest artifact {newest.version_label}"
    commit = view.awaited_commit
    if commit is None:
        return True, "no commit that runs CI touches the watched path"
    if view.artifact_for(commit) is not None:
        return True, f"an artifact exists for {commit.sha[:7]}"
    if any(run.status != "completed" for run in view.build_runs_for(commit)):
        return True, f"the build for {commit.sha[:7]} is still running"
    return False, f"no artifact for commit {commit.sha[:7]} in {view.pipeline.artifact}"


def source_selects(view: PipelineView, stage: str, pins_count: bool) -> Finding:
    source = _source(view, stage)
    if not isinstance(source, OCIRepositoryData):
        return source
    if source.url.removeprefix("oci://").rstrip("/") != view.pipeline.registry_repository:
        return False, f"spec.url is {source.url}, not {view.pipeline.artifact}"
    if is_pin(source) and not pins_count:
        return True, "pinned: judged by the next node"
    expected = view.expected(stage)
    if expected is None:
        return True, f"no tag matches {view.stages[stage].config.semver.text} yet"
    selection = view.select(source)
    if selection.artifact is not None and selection.artifact.digest == expected.digest:
        return True, f"{selection.how} selects {expected.version_label}{_outranked(view)}"
    return False, f"{selection.how} does not select {expected.version_label}"


def source_ready(view: PipelineView, stage: str) -> Finding:
    source = _source(view, stage)
    if not isinstance(source, OCIRepositoryData):
        return source
    ready = source.ready
    if ready is None:
        return False, "the OCIRepository has no Ready condition yet"
    if ready.is_true:
        return True, "Ready"
    if ready.status == "Unknown" and source.artifact_revision:
        # source-controller marks every reconcile Ready=Unknown; it still serves its artifact.
        return True, f"reconciling ({ready.reason}), serving {source.artifact_revision}"
    return False, f"Ready={ready.status} {ready.reason}: {ready.message}"


def source_current(view: PipelineView, stage: str) -> Finding:
    source = _source(view, stage)
    if not isinstance(source, OCIRepositoryData):
        return source
    expected = view.expected(stage) if not is_pin(source) else view.select(source).artifact
    revision = source.artifact_revision or "none"
    suspended = " (suspended)" if source.suspended else ""
    if expected is None or parse_revision(revision)[1] == expected.digest:
        return True, f"artifact is {revision}{suspended}"
    # Suspension is only a cause once something newer is waiting to be picked up.
    if source.suspended:
        return False, f"the OCIRepository is suspended at {revision}"
    return False, f"artifact is {revision}, not {expected.version_label}"


def applied(view: PipelineView, stage: str) -> Finding:
    stage_view = view.stages[stage]
    kustomization = stage_view.kustomization
    if isinstance(kustomization, Missing):
        ref = stage_view.config.kustomization
        return False, describe_missing("Kustomization", ref, kustomization)
    if kustomization is None:
        return None, UNREADABLE.format(kind="Kustomization")
    assert isinstance(kustomization, KustomizationData)
    source = stage_view.source
    if isinstance(source, OCIRepositoryData) and is_pin(source):
        return _kustomization_fact(kustomization, view.select(source).artifact)
    return _kustomization_fact(kustomization, view.expected(stage))


def validation_dispatched(view: PipelineView) -> Finding:
    candidate = view.deployed("integration")
    if candidate is None or candidate.validated:
        return True, _validated_detail(candidate)
    spec_ok, spec_detail = _notification_spec(view)
    if view.pipeline.github is None or spec_ok is False:
        return spec_ok, spec_detail
    since = _since(view, candidate)
    if _flux_commit_status(view, candidate, since) is not None:
        return True, f"Flux set a commit status on {candidate.short_sha} after the apply"
    runs = _dispatch_runs(view, since)
    if runs:
        return True, f"promote run {runs[0].id} ({runs[0].event}) started after the apply"
    return False, f"no dispatched promote run since integration applied {candidate.version_label}"


def validation_succeeded(view: PipelineView) -> Finding:
    candidate = view.deployed("integration")
    if candidate is None or candidate.validated:
        return True, _validated_detail(candidate)
    if not view.known_github.promote_workflow_found:
        return False, f"the tag workflow {_promote_workflow(view)} was not found"
    runs = [r for r in _dispatch_runs(view, _since(view, candidate)) if r.status == "completed"]
    if not runs:
        return True, "no dispatched promote run has completed since the apply"
    return False, (
        f"promote run {runs[0].id} ended {runs[0].conclusion} but "
        f"{candidate.version_label} has no validated-{candidate.short_sha} tag"
    )


# --- Live tree ---------------------------------------------------------------------------


def stable_tag_present(view: PipelineView) -> Finding:
    validated = view.known_index.newest_validated
    if validated is None:
        return True, "no artifact is validated yet"
    if validated.stable is None:
        return False, (
            f"validated-{validated.short_sha} ({validated.version_label}) has no stable X.Y.Z tag"
        )
    return True, f"validated-{validated.short_sha} is tagged {validated.stable}"


def live_not_pinned(view: PipelineView) -> Finding:
    source = _source(view, "live")
    if not isinstance(source, OCIRepositoryData):
        return source
    if not is_pin(source):
        return True, "selects by semver"
    pin = source.ref_digest or source.ref_tag
    expected = view.expected("live")
    selected = view.select(source).artifact
    if expected is None or (selected is not None and selected.digest == expected.digest):
        return True, f"pinned to {pin}, which is the newest release"
    return False, f"pinned to {pin}; the newest release is {expected.stable}"


def release_is_highest(view: PipelineView) -> Finding:
    index = view.known_index
    validated, highest = index.newest_validated, index.highest_stable
    if validated is None or validated.stable is None or highest is None:
        return True, "no validated release to compare"
    if highest.digest == validated.digest:
        return True, f"{validated.stable} is the highest stable version"
    if view.stages["live"].history_for(validated.digest):
        # Live ran it, then moved to a higher version on an older artifact: a rollback by
        # re-tagging (the runbook's option 3), which is what the operator asked for.
        return True, f"rolled back: live ran {validated.stable}, then {highest.stable} outranked it"
    return False, f"newest validated release {validated.stable} is below {highest.stable}"


def live_helm_releases_ready(view: PipelineView) -> Finding:
    cluster = view.stages["live"].cluster
    assert cluster is not None
    releases = cluster.helm_releases
    if isinstance(releases, Missing):
        return True, "no HelmRelease CRD in live"
    namespaces = set(view.pipeline.helm_release_namespaces)
    failing = [
        release
        for release in releases
        if release.ready is False and (not namespaces or release.namespace in namespaces)
    ]
    if not failing:
        return True, "every HelmRelease is Ready or reconciling"
    shown = ", ".join(f"{r.namespace}/{r.name} ({r.reason})" for r in failing[:3])
    more = f" and {len(failing) - 3} more" if len(failing) > 3 else ""
    return False, f"HelmRelease not Ready: {shown}{more}"


# --- Shared ------------------------------------------------------------------------------


def _source(view: PipelineView, stage: str) -> OCIRepositoryData | Finding:
    """The stage's OCIRepository, or the finding when it does not exist."""
    stage_view = view.stages[stage]
    source = stage_view.source
    if isinstance(source, Missing):
        return False, describe_missing("OCIRepository", stage_view.config.source, source)
    if source is None:
        return None, UNREADABLE.format(kind="OCIRepository")
    assert isinstance(source, OCIRepositoryData)
    return source


def _outranked(view: PipelineView) -> str:
    outranked = view.outranked_build
    if outranked is None:
        return ""
    newest, higher = outranked
    return f" ({higher.version_label} outranks the newest build {newest.version_label})"


def _kustomization_fact(kustomization: KustomizationData, expected: ArtifactView | None) -> Finding:
    applied_revision = kustomization.last_applied_revision or "none"
    current = expected is None or parse_revision(applied_revision)[1] == expected.digest
    if kustomization.suspended:
        # Suspended at the newest revision is not stuck yet; behind it, it is the cause.
        if current:
            return True, f"applied {applied_revision} (suspended)"
        return False, f"the Kustomization is suspended at {applied_revision}"
    ready = kustomization.ready
    if current and ready is not None and ready.status == "Unknown":
        # kustomize-controller marks every reconcile Ready=Unknown (Progressing), health
        # checks included, while the applied revision is unchanged.
        return True, f"applied {applied_revision}, reconciling again ({ready.reason})"
    if ready is None or not ready.is_true:
        reason = f"{ready.reason}: {ready.message}" if ready else "no Ready condition yet"
        return False, f"not Ready: {reason}"
    if current:
        return True, f"applied {applied_revision}"
    assert expected is not None
    return False, f"applied {applied_revision}, not {expected.version_label}"


def _validated_detail(candidate: ArtifactView | None) -> str:
    if candidate is None:
        return "nothing applied in integration yet"
    return f"{candidate.version_label} is tagged validated-{candidate.short_sha}"


def _since(view: PipelineView, candidate: ArtifactView) -> float | None:
    applied_at = view.applied_at("integration")
    return applied_at if applied_at is not None else view.build_time(candidate)


def _provider_type(view: PipelineView) -> str:
    provider = view.provider()
    return provider.type if isinstance(provider, ProviderData) else "githubdispatch"


def _dispatch_runs(view: PipelineView, since: float | None) -> list[WorkflowRun]:
    """Promote runs the Alert caused after the apply, newest first; skipped runs are neither
    a dispatch that worked nor one that failed."""
    event = DISPATCH_EVENTS.get(_provider_type(view), "repository_dispatch")
    kustomization = view.stages["integration"].config.kustomization
    return [
        run
        for run in view.known_github.promote_runs
        if run.event == event
        and run.conclusion != "skipped"
        and not _titled_for_another(run, kustomization)
        and (since is None or (run.created_at or 0) >= since - CLOCK_SKEW_SECONDS)
    ]


def _titled_for_another(run: WorkflowRun, kustomization: ObjectRef) -> bool:
    """A run whose title names another Kustomization's event was another pipeline's; an
    untitled run cannot tell, so it counts."""
    titled = _TITLED_EVENT.search(run.display_title)
    if titled is None:
        return False
    namespace = titled["namespace"] or kustomization.namespace
    return (titled["name"], namespace) != (kustomization.name, kustomization.namespace)


def _flux_commit_status(
    view: PipelineView, candidate: ArtifactView, since: float | None
) -> CommitStatus | None:
    """For the github Provider: Flux's own commit status on the artifact's commit."""
    if _provider_type(view) != "github" or candidate.commit is None:
        return None
    context = f"kustomization/{view.stages['integration'].config.kustomization.name}/"
    for sha, statuses in view.known_github.statuses.items():
        if not candidate.matches_commit(sha):
            continue
        for status in statuses:
            recent = since is None or (status.created_at or 0) >= since - CLOCK_SKEW_SECONDS
            if status.context.lower().startswith(context) and recent:
                return status
    return None


def _notification_spec(view: PipelineView) -> Finding:
    cluster = view.stages["integration"].cluster
    alert_ref, provider_ref = view.pipeline.alert, view.pipeline.provider
    assert cluster is not None and alert_ref is not None and provider_ref is not None
    alert = cluster.alerts.get(alert_ref, Missing.NOT_FOUND)
    provider = cluster.providers.get(provider_ref, Missing.NOT_FOUND)
    if isinstance(alert, Missing):
        return False, describe_missing("Alert", alert_ref, alert)
    if isinstance(provider, Missing):
        return False, describe_missing("Provider", provider_ref, provider)
    if alert is None or provider is None:
        return None, UNREADABLE.format(kind="Alert" if alert is None else "Provider")
    problem = _alert_problem(alert, alert_ref, provider_ref, view.stages["integration"].config)
    problem = problem or _provider_problem(provider)
    if problem:
        return False, problem
    return True, f"Alert {alert_ref.name} and Provider {provider_ref.name} are set up"


def _alert_problem(
    alert: AlertData, alert_ref: ObjectRef, provider: ObjectRef, stage: StageConfig
) -> str | None:
    kustomization = stage.kustomization
    # notification-controller: an eventSource without a namespace is in the Alert's own.
    watches = any(
        source.kind == "Kustomization"
        and source.name in (kustomization.name, "*")
        and (source.namespace or alert_ref.namespace) == kustomization.namespace
        for source in alert.event_sources
    )
    if alert.suspended:
        return "the Alert is suspended"
    if alert.provider_name != provider.name:
        return f"the Alert sends to provider {alert.provider_name}, not {provider.name}"
    if not watches:
        return (
            f"the Alert does not watch Kustomization {kustomization.namespace}/{kustomization.name}"
        )
    if alert.event_severity == "error":
        return "the Alert's eventSeverity is error, so success events are dropped"
    if not _admits_success_event(alert):
        return "the Alert's inclusion/exclusion lists drop 'Reconciliation finished'"
    return None


def _admits_success_event(alert: AlertData) -> bool:
    def matches(patterns: Iterable[str]) -> bool:
        return any(re.search(pattern, RECONCILIATION_FINISHED) for pattern in patterns)

    included = not alert.inclusion_list or matches(alert.inclusion_list)
    return included and not matches(alert.exclusion_list)


def _provider_problem(provider: ProviderData) -> str | None:
    if provider.suspended:
        return "the Provider is suspended"
    if provider.type not in PROVIDER_TYPES:
        return f"the Provider's type is {provider.type}, not {' or '.join(PROVIDER_TYPES)}"
    if not provider.secret_name:
        return "the Provider has no secretRef with a GitHub token"
    return None


def _build_workflow(view: PipelineView) -> str:
    github = view.pipeline.github
    return github.build_workflow if github else ""


def _promote_workflow(view: PipelineView) -> str:
    github = view.pipeline.github
    return (github.promote_workflow or "") if github else ""


def run_outcome(run: WorkflowRun) -> str:
    return run.conclusion or run.status


# One fact per node of exporter.trees, by node id.
NODE_FACTS: dict[str, NodeFact] = {
    "build_succeeded": build_succeeded,
    "artifact_in_registry": artifact_in_registry,
    "integration_source_selects_candidate": lambda v: source_selects(v, "integration", True),
    "integration_source_ready": lambda v: source_ready(v, "integration"),
    "integration_source_current": lambda v: source_current(v, "integration"),
    "integration_applied": lambda v: applied(v, "integration"),
    "validation_dispatched": validation_dispatched,
    "validation_succeeded": validation_succeeded,
    "stable_tag_present": stable_tag_present,
    "live_source_selects_release": lambda v: source_selects(v, "live", False),
    "live_not_pinned": live_not_pinned,
    "release_is_highest": release_is_highest,
    "live_source_ready": lambda v: source_ready(v, "live"),
    "live_source_current": lambda v: source_current(v, "live"),
    "live_applied": lambda v: applied(v, "live"),
    "live_helm_releases_ready": live_helm_releases_ready,
}
