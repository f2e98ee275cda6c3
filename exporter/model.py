"""The pipeline model: a pure function from one poll's snapshot to the pipeline's state.

No I/O and no clock: `now` is the snapshot's own time, and every other timestamp comes from a
source (annotations, Kustomization history, OCIRepository status, workflow runs), so a
restarted exporter computes the same state. A fact whose source is down is None (unknown),
never False. The node facts live in exporter.facts, the accessors they share in exporter.view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from exporter.artifacts import ArtifactView, parse_revision
from exporter.config import Config
from exporter.facts import Fact, evaluate, run_outcome
from exporter.snapshot import (
    CanaryData,
    ClusterData,
    ClusterWants,
    HelmReleaseCounts,
    KustomizationData,
    Missing,
    ObjectRef,
    RateLimit,
    Snapshot,
    SourceStatus,
)
from exporter.trees import INTEGRATION, LIVE, Node, Tree, tree_nodes
from exporter.versions import Version, parse_tag
from exporter.view import PipelineView

STAGES = ("build", "integration", "validated", "release", "live")
LAG_STAGES = ("integration", "validated", "release", "live")
LATER_STAGES = ("validated", "release", "live")  # stages an artifact reaches after integration
HISTORY_ENTRIES = 5  # kustomize-controller keeps the last five


@dataclass(frozen=True)
class StageArtifact:
    stage: str
    version: str
    revision: str
    digest: str
    prerelease: bool | None = None  # as Flux parses the version; None for a non-semver pin
    sha: str | None = None  # the short commit sha, when the artifact is known


@dataclass(frozen=True)
class NodeState:
    node: Node
    ok: Fact
    detail: str

    @property
    def status(self) -> str:
        return {True: "ok", False: "failing", None: "unknown"}[self.ok]


@dataclass(frozen=True)
class TreeState:
    tree: Tree
    nodes: tuple[NodeState, ...]
    candidate_sha: str | None
    candidate_version: str | None

    @property
    def stop(self) -> NodeState | None:
        """The first node that did not pass: where the walk stops (failing or unknown)."""
        return next((state for state in self.nodes if state.ok is not True), None)


@dataclass(frozen=True)
class CanaryCheckState:
    cluster: str
    namespace: str
    canary: str
    check: str
    healthy: bool | None
    uptime_ratio: float | None


@dataclass(frozen=True)
class CanaryState:
    """A configured Canary that exists: when canary-checker last ran it, and how often it
    should, so a Canary whose runner stopped does not read healthy forever."""

    cluster: str
    namespace: str
    canary: str
    last_check: float | None
    interval_seconds: float | None


@dataclass(frozen=True)
class ObjectPresence:
    cluster: str
    kind: str
    namespace: str
    name: str
    present: bool


@dataclass(frozen=True)
class RegistryCounts:
    tags: int
    artifacts: int
    ignored_tags: int


@dataclass(frozen=True)
class Outranked:
    """The newest build, outranked by a higher version on an older artifact: a rollback by
    re-tagging, or an RC whose older sibling got the stable tag. A fact, not a fault."""

    build: str
    by: str


@dataclass(frozen=True)
class HistoryTimes:
    """One Kustomization history entry's times; its revision is left out to bound series."""

    first_reconciled: float | None
    last_reconciled: float | None


@dataclass(frozen=True)
class PipelineState:
    name: str
    versions: tuple[StageArtifact, ...]
    created: dict[str, float]  # build time of the artifact at each stage
    applied: dict[str, float]  # when integration / live applied their artifact
    lags: dict[str, float]
    validation_staleness: float | None
    trees: tuple[TreeState, ...]
    registry: RegistryCounts | None
    sources: tuple[tuple[str, str], ...]  # (kind, name) of every source this pipeline reads
    outranked: Outranked | None = None
    # The commit time of the artifact at each stage.
    committed: dict[str, float] = field(default_factory=dict)
    # When integration applied the artifact now at a later stage: the integration-to-live hop.
    integration_applied: dict[str, float] = field(default_factory=dict)
    # Each stage's Kustomization history, newest first.
    history: dict[str, tuple[HistoryTimes, ...]] = field(default_factory=dict)
    rolled_back: dict[str, bool] = field(default_factory=dict)
    clusters: dict[str, str] = field(default_factory=dict)  # each stage's cluster


@dataclass(frozen=True)
class WorkflowState:
    role: str  # build | promote
    workflow: str  # the workflow file
    last_run_created: float | None
    conclusions: dict[str, int]  # among the recent runs read, by conclusion (or status)


@dataclass(frozen=True)
class GitHubState:
    pipeline: str
    repository: str
    workflows: tuple[WorkflowState, ...]
    head_statuses: dict[str, int]  # statuses on the newest watched commit, by state


@dataclass(frozen=True)
class State:
    taken_at: float
    pipelines: tuple[PipelineState, ...]
    canary_checks: tuple[CanaryCheckState, ...]
    objects: tuple[ObjectPresence, ...]
    helm_releases: dict[str, HelmReleaseCounts]
    github: tuple[GitHubState, ...]
    rate_limit: RateLimit | None
    sources: tuple[SourceStatus, ...]
    canaries: tuple[CanaryState, ...] = ()
    # The poller's counters, as of this state: complete polls, and failed polls by
    # (kind, name, reason). The model leaves them empty; the poller fills them in.
    polls: int = 0
    source_errors: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    interval: float | None = None  # the configured poll interval


def build_state(config: Config, snapshot: Snapshot) -> State:
    """The whole pipeline's state as of the snapshot."""
    wants = cluster_wants(config)
    views = [PipelineView(pipeline, snapshot) for pipeline in config.pipelines]
    return State(
        taken_at=snapshot.taken_at,
        pipelines=tuple(pipeline_state(view) for view in views),
        canary_checks=_canary_checks(wants, snapshot),
        objects=_object_presence(wants, snapshot),
        helm_releases=_helm_releases(snapshot),
        github=tuple(state for view in views if (state := _github_state(view)) is not None),
        rate_limit=snapshot.github_rate_limit,
        sources=snapshot.sources,
        canaries=_canaries(wants, snapshot),
        interval=config.interval,
    )


# --- One pipeline --------------------------------------------------------------------------


def pipeline_state(view: PipelineView) -> PipelineState:
    artifacts = _stage_artifacts(view)
    outranked = view.outranked_build
    return PipelineState(
        name=view.pipeline.name,
        versions=_versions(view, artifacts),
        created=_times(artifacts, view.build_time),
        applied={s: at for s in view.stages if (at := view.applied_at(s)) is not None},
        lags=_lags(view, artifacts),
        validation_staleness=_validation_staleness(view),
        trees=_trees(view),
        registry=_registry_counts(view),
        sources=_source_names(view),
        outranked=Outranked(outranked[0].version_label, outranked[1].version_label)
        if outranked
        else None,
        committed=_times(artifacts, view.commit_time),
        integration_applied=_times(
            {s: artifacts[s] for s in LATER_STAGES if "integration" in view.stages},
            view.integration_applied_at,
        ),
        history={stage: _history(view, stage) for stage in view.stages},
        rolled_back={s: back for s in view.stages if (back := view.rolled_back(s)) is not None},
        clusters={name: stage.cluster for name, stage in view.pipeline.stages.items()},
    )


def _times(
    artifacts: dict[str, ArtifactView | None], time_of: Callable[[ArtifactView], float | None]
) -> dict[str, float]:
    return {
        stage: time
        for stage, artifact in artifacts.items()
        if artifact is not None and (time := time_of(artifact)) is not None
    }


def _history(view: PipelineView, stage: str) -> tuple[HistoryTimes, ...]:
    """The times of the stage's Kustomization history, capped at the five entries Flux keeps."""
    kustomization = view.stages[stage].kustomization
    if not isinstance(kustomization, KustomizationData):
        return ()
    entries = kustomization.history[:HISTORY_ENTRIES]
    return tuple(HistoryTimes(e.first_reconciled, e.last_reconciled) for e in entries)


def _registry_counts(view: PipelineView) -> RegistryCounts | None:
    registry = view.registry
    if registry is None:
        return None
    return RegistryCounts(registry.tag_count, len(registry.artifacts), registry.ignored_tags)


def _source_names(view: PipelineView) -> tuple[tuple[str, str], ...]:
    pipeline = view.pipeline
    names = [("registry", pipeline.registry_repository)]
    names += sorted({("cluster", s.cluster) for s in pipeline.stages.values()})
    if pipeline.github is not None:
        names.append(("github", pipeline.github.repository))
    return tuple(names)


def _stage_artifacts(view: PipelineView) -> dict[str, ArtifactView | None]:
    index = view.index
    return {
        "build": index.newest if index else None,
        "validated": index.newest_validated if index else None,
        "release": index.highest_stable if index else None,
        "integration": view.deployed("integration"),
        "live": view.deployed("live"),
    }


def _versions(
    view: PipelineView, artifacts: dict[str, ArtifactView | None]
) -> tuple[StageArtifact, ...]:
    found = []
    for stage in STAGES:
        artifact = artifacts[stage]
        if stage in ("integration", "live"):
            found.extend(_deployed_version(view, stage, artifact))
        elif artifact is not None:
            version = (artifact.stable or "") if stage == "release" else artifact.version_label
            found.append(
                StageArtifact(
                    stage,
                    version,
                    artifact.revision_label,
                    artifact.digest,
                    _prerelease(version),
                    artifact.short_sha,
                )
            )
    return tuple(found)


def _prerelease(tag: str) -> bool | None:
    version = parse_tag(tag)
    return version.is_prerelease if version is not None else None


def _deployed_version(
    view: PipelineView, stage: str, artifact: ArtifactView | None
) -> list[StageArtifact]:
    """Deployed versions come from the cluster, so they are known while the registry is down."""
    revision = view.stages[stage].applied_revision if stage in view.stages else None
    if revision is None:
        return []
    tag, digest = parse_revision(revision)
    if not tag and artifact is not None:
        tag = artifact.version_label
    revision_label = artifact.revision_label if artifact is not None else ""
    sha = artifact.short_sha if artifact is not None else None
    return [StageArtifact(stage, tag or "", revision_label, digest, _prerelease(tag or ""), sha)]


def _lags(view: PipelineView, artifacts: dict[str, ArtifactView | None]) -> dict[str, float]:
    if view.index is None:
        return {}
    lags = {}
    for stage in LAG_STAGES:
        if stage in ("integration", "live") and not _stage_known(view, stage):
            continue
        lag = _lag_behind(view, artifacts[stage], _rank(view, stage, artifacts[stage]))
        if lag is not None:
            lags[stage] = lag
    return lags


def _rank(view: PipelineView, stage: str, artifact: ArtifactView | None) -> Version | None:
    if stage in ("integration", "live"):
        return view.deployed_rank(stage)
    if stage == "release":
        return artifact.stable_version if artifact else None
    return artifact.rank if artifact else None


def _stage_known(view: PipelineView, stage: str) -> bool:
    """A deployed stage's lag is known when its cluster answered and we know what it runs."""
    # No Kustomization when the cluster is down, or when it could not be read.
    if stage not in view.stages or view.stages[stage].kustomization is None:
        return False
    return view.stages[stage].applied_revision is None or view.deployed(stage) is not None


def _lag_behind(
    view: PipelineView, there: ArtifactView | None, rank: Version | None
) -> float | None:
    """Age of the oldest build that has not reached the stage (0 when current)."""
    pending = [b for b in view.known_index.views if not view.reached(b, there, rank)]
    if not pending:
        return 0.0
    built = [time for b in pending if (time := view.build_time(b)) is not None]
    return max(0.0, view.now - min(built)) if built else None


def _validation_staleness(view: PipelineView) -> float | None:
    if "integration" not in view.stages or view.index is None:
        return None
    applied = view.deployed("integration")
    if applied is None:
        return None
    if applied.validated:
        return 0.0
    applied_at = view.applied_at("integration")
    return max(0.0, view.now - applied_at) if applied_at is not None else None


def _trees(view: PipelineView) -> tuple[TreeState, ...]:
    trees = []
    if "integration" in view.stages:
        candidate, sha = _integration_candidate(view)
        trees.append(_walk(view, INTEGRATION, candidate, sha))
    if "live" in view.stages:
        validated = view.index.newest_validated if view.index else None
        trees.append(_walk(view, LIVE, validated, validated.short_sha if validated else None))
    return tuple(trees)


def _integration_candidate(view: PipelineView) -> tuple[ArtifactView | None, str | None]:
    """The newest build, or the awaited commit when the registry has no artifact for it."""
    commit = view.awaited_commit
    if commit is not None and view.index is not None:
        built = view.artifact_for(commit)
        return (built, built.short_sha) if built else (None, commit.sha[:7])
    newest = view.index.newest if view.index else None
    return newest, newest.short_sha if newest else None


def _walk(
    view: PipelineView, tree: Tree, candidate: ArtifactView | None, sha: str | None
) -> TreeState:
    nodes = tuple(NodeState(node, *evaluate(node, view)) for node in tree_nodes(tree, view.wired))
    return TreeState(tree, nodes, sha, candidate.version_label if candidate else None)


# --- Cluster-wide and GitHub-wide state -------------------------------------------------


# The kinds a cluster is asked for: the exported kind name and the ClusterData field.
@dataclass(frozen=True)
class _WantedKind:
    """A kind the clusters are asked for: which objects of it are wanted, which were read."""

    name: str
    wanted: Callable[[ClusterWants], frozenset[ObjectRef]]
    found: Callable[[ClusterData], Mapping[ObjectRef, object]]


_WANTED_KINDS = (
    _WantedKind("OCIRepository", lambda w: w.oci_repositories, lambda c: c.oci_repositories),
    _WantedKind("Kustomization", lambda w: w.kustomizations, lambda c: c.kustomizations),
    _WantedKind("Canary", lambda w: w.canaries, lambda c: c.canaries),
    _WantedKind("Alert", lambda w: w.alerts, lambda c: c.alerts),
    _WantedKind("Provider", lambda w: w.providers, lambda c: c.providers),
)


def cluster_wants(config: Config) -> dict[str, ClusterWants]:
    """The objects each cluster is asked for, gathered from every pipeline that uses it."""
    wants = {name: ClusterWants() for name in config.clusters}
    for pipeline in config.pipelines:
        for stage_name, stage in pipeline.stages.items():
            want = wants[stage.cluster]
            dispatch = (
                (pipeline.alert, pipeline.provider)
                if stage_name == "integration" and pipeline.alert and pipeline.provider
                else None
            )
            wants[stage.cluster] = ClusterWants(
                oci_repositories=want.oci_repositories | {stage.source},
                kustomizations=want.kustomizations | {stage.kustomization},
                canaries=want.canaries | set(stage.canaries),
                alerts=want.alerts | ({dispatch[0]} if dispatch else set()),
                providers=want.providers | ({dispatch[1]} if dispatch else set()),
            )
    return wants


def _lookup(cluster: ClusterData | None, kind: _WantedKind, ref: ObjectRef) -> object | None:
    """The object as read, Missing when the cluster lacks it, None when the cluster is down."""
    if cluster is None:
        return None
    return kind.found(cluster).get(ref, Missing.NOT_FOUND)


def _wanted(
    wants: dict[str, ClusterWants],
) -> list[tuple[str, _WantedKind, ObjectRef]]:
    """(cluster, kind, ref) for every wanted object, in a stable order."""
    found = [
        (cluster, kind, ref)
        for cluster, want in wants.items()
        for kind in _WANTED_KINDS
        for ref in kind.wanted(want)
    ]
    return sorted(found, key=lambda w: (w[0], w[1].name, w[2].namespace, w[2].name))


def _found_canaries(
    wants: dict[str, ClusterWants], snapshot: Snapshot
) -> Iterable[tuple[str, ObjectRef, CanaryData]]:
    """Each configured Canary that was read, in a stable order; absent ones are left to
    promotion_kubernetes_object_present."""
    for cluster_name, want in sorted(wants.items()):
        cluster = snapshot.clusters.get(cluster_name)
        for ref in sorted(want.canaries, key=lambda r: (r.namespace, r.name)):
            canary = cluster.canaries.get(ref) if cluster is not None else None
            if isinstance(canary, CanaryData):
                yield cluster_name, ref, canary


def _canary_checks(
    wants: dict[str, ClusterWants], snapshot: Snapshot
) -> tuple[CanaryCheckState, ...]:
    checks = []
    for cluster_name, ref, canary in _found_canaries(wants, snapshot):
        for check in canary.checks:
            total = (check.passed_1h or 0) + (check.failed_1h or 0)
            ratio = check.passed_1h / total if check.passed_1h is not None and total else None
            checks.append(
                CanaryCheckState(
                    cluster_name, ref.namespace, ref.name, check.name, check.healthy, ratio
                )
            )
    return tuple(checks)


def _canaries(wants: dict[str, ClusterWants], snapshot: Snapshot) -> tuple[CanaryState, ...]:
    return tuple(
        CanaryState(cluster, ref.namespace, ref.name, canary.last_check, canary.interval_seconds)
        for cluster, ref, canary in _found_canaries(wants, snapshot)
    )


def _object_presence(
    wants: dict[str, ClusterWants], snapshot: Snapshot
) -> tuple[ObjectPresence, ...]:
    found = []
    for cluster, kind, ref in _wanted(wants):
        value = _lookup(snapshot.clusters.get(cluster), kind, ref)
        if value is not None:
            found.append(
                ObjectPresence(
                    cluster, kind.name, ref.namespace, ref.name, not isinstance(value, Missing)
                )
            )
    return tuple(found)


def _helm_releases(snapshot: Snapshot) -> dict[str, HelmReleaseCounts]:
    """Per cluster whose HelmRelease CRD is installed: how many releases are Ready."""
    return {
        name: HelmReleaseCounts(
            ready=sum(1 for release in cluster.helm_releases if release.ready is True),
            total=len(cluster.helm_releases),
        )
        for name, cluster in sorted(snapshot.clusters.items())
        if cluster is not None and not isinstance(cluster.helm_releases, Missing)
    }


def _github_state(view: PipelineView) -> GitHubState | None:
    github, config = view.github, view.pipeline.github
    if github is None or config is None:
        return None
    roles = [("build", config.build_workflow, github.build_runs)]
    if config.promote_workflow is not None:
        roles.append(("promote", config.promote_workflow, github.promote_runs))
    workflows = tuple(
        WorkflowState(
            role,
            workflow,
            runs[0].created_at if runs else None,
            _count(run_outcome(run) for run in runs),
        )
        for role, workflow, runs in roles
    )
    head = github.head_commit
    statuses = github.statuses.get(head.sha, ()) if head else ()
    return GitHubState(
        view.pipeline.name,
        config.repository,
        workflows,
        _count(status.state for status in statuses),
    )


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
