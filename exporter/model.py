"""The pipeline model: a pure function from one poll's snapshot to the pipeline's state.

No I/O and no clock: `now` is the snapshot's own time, and every other timestamp comes from a
source (annotations, Kustomization history, OCIRepository status, workflow runs), so a
restarted exporter computes the same state. A fact whose source is down is None (unknown),
never False.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

from exporter.artifacts import ArtifactIndex, ArtifactView, parse_revision
from exporter.config import Config, PipelineConfig, StageConfig
from exporter.snapshot import (
    AlertData,
    ClusterData,
    ClusterWants,
    GitHubData,
    HelmReleaseCounts,
    KustomizationData,
    Missing,
    ObjectRef,
    OCIRepositoryData,
    ProviderData,
    RateLimit,
    Snapshot,
    SourceStatus,
    WorkflowRun,
)
from exporter.trees import INTEGRATION, LIVE, Node, Tree, tree_nodes
from exporter.versions import Constraint, ConstraintError, select_highest

STAGES = ("build", "integration", "validated", "release", "live")
LAG_STAGES = ("integration", "validated", "release", "live")
# Flux's success event, which the Alert's inclusionList must admit for the dispatch to fire.
RECONCILIATION_FINISHED = "Reconciliation finished in 1m0s, next run in 10m0s"
# Tolerance between the cluster's clock (apply time) and GitHub's (run creation time). Small,
# because the Alert re-fires on every reconciliation and an older run must not count.
CLOCK_SKEW_SECONDS = 15.0
FAILED_CONCLUSIONS = frozenset(
    {"failure", "cancelled", "timed_out", "action_required", "startup_failure", "stale"}
)

Fact = bool | None


@dataclass(frozen=True)
class StageArtifact:
    stage: str
    version: str
    revision: str
    digest: str


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


@dataclass(frozen=True)
class WorkflowState:
    role: str  # build | promote
    last_run_created: float | None
    conclusions: dict[str, int]  # among the recent runs read, by conclusion (or status)


@dataclass(frozen=True)
class GitHubState:
    workflows: tuple[WorkflowState, ...]
    head_statuses: dict[str, int]  # by state


@dataclass(frozen=True)
class State:
    taken_at: float
    pipelines: tuple[PipelineState, ...]
    canary_checks: tuple[CanaryCheckState, ...]
    objects: tuple[ObjectPresence, ...]
    helm_releases: dict[str, HelmReleaseCounts]
    github: GitHubState | None
    rate_limit: RateLimit | None
    sources: tuple[SourceStatus, ...]


def build_state(config: Config, snapshot: Snapshot) -> State:
    """The whole pipeline's state as of the snapshot."""
    wants = cluster_wants(config)
    return State(
        taken_at=snapshot.taken_at,
        pipelines=tuple(_PipelineModel(config, p, snapshot).state() for p in config.pipelines),
        canary_checks=_canary_checks(wants, snapshot),
        objects=_object_presence(wants, snapshot),
        helm_releases=_helm_releases(snapshot),
        github=_github_state(snapshot.github),
        rate_limit=snapshot.github_rate_limit,
        sources=snapshot.sources,
    )


# --- Tri-state logic --------------------------------------------------------------------


def all_of(*facts: Fact) -> Fact:
    """Kleene AND: one known False decides; otherwise any unknown makes it unknown."""
    if any(fact is False for fact in facts):
        return False
    return None if any(fact is None for fact in facts) else True


# --- One stage of one pipeline ----------------------------------------------------------


@dataclass(frozen=True)
class _Stage:
    config: StageConfig
    cluster: ClusterData | None  # None: the cluster is down

    @property
    def source(self) -> OCIRepositoryData | Missing | None:
        return _lookup(self.cluster, "oci_repositories", self.config.source)

    @property
    def kustomization(self) -> KustomizationData | Missing | None:
        return _lookup(self.cluster, "kustomizations", self.config.kustomization)

    @property
    def applied_revision(self) -> str | None:
        kustomization = self.kustomization
        if isinstance(kustomization, KustomizationData):
            return kustomization.last_applied_revision
        return None

    def applied_at(self) -> float | None:
        """When the applied revision was first reconciled: history first, then the source."""
        revision = self.applied_revision
        kustomization = self.kustomization
        if revision is None or not isinstance(kustomization, KustomizationData):
            return None
        for entry in kustomization.history:
            if entry.revision == revision and entry.first_reconciled is not None:
                return entry.first_reconciled
        source = self.source
        if isinstance(source, OCIRepositoryData) and source.artifact_revision == revision:
            return source.artifact_last_update
        return None


def _lookup(cluster: ClusterData | None, kind: str, name: ObjectRef) -> object | None:
    if cluster is None:
        return None
    return getattr(cluster, kind).get(name, Missing.NOT_FOUND)


def _describe_missing(kind: str, ref: ObjectRef, missing: Missing) -> str:
    if missing is Missing.CRD_MISSING:
        return f"the {kind} CRD is not installed"
    return f"{kind} {ref.namespace}/{ref.name} does not exist"


class _PipelineModel:
    """Computes one pipeline's state; each tree node's fact is one method."""

    def __init__(self, config: Config, pipeline: PipelineConfig, snapshot: Snapshot) -> None:
        self.pipeline = pipeline
        self.now = snapshot.taken_at
        self.has_github = config.github is not None
        self.github = snapshot.github
        registry = snapshot.registries.get(pipeline.name)
        self.index = ArtifactIndex(registry) if registry is not None else None
        self.registry = registry
        self.stages = {
            name: _Stage(stage, snapshot.clusters.get(stage.cluster))
            for name, stage in pipeline.stages.items()
        }
        self.github_name = config.github.repository if config.github else None
        self._expected: dict[str, ArtifactView | None] = {}

    def state(self) -> PipelineState:
        return PipelineState(
            name=self.pipeline.name,
            versions=self.versions(),
            created=self.created_times(),
            applied=self.applied_times(),
            lags=self.lags(),
            validation_staleness=self.validation_staleness(),
            trees=self.trees(),
            registry=(
                RegistryCounts(
                    self.registry.tag_count,
                    len(self.registry.artifacts),
                    self.registry.ignored_tags,
                )
                if self.registry is not None
                else None
            ),
            sources=self.source_names(),
        )

    def source_names(self) -> tuple[tuple[str, str], ...]:
        names = [("registry", self.pipeline.registry_repository)]
        names += sorted({("cluster", s.cluster) for s in self.pipeline.stages.values()})
        if self.github_name:
            names.append(("github", self.github_name))
        return tuple(names)

    # --- Artifacts at each stage --------------------------------------------------------

    def expected(self, stage: str) -> ArtifactView | None:
        """What the stage should run: integration the newest build, live the release that
        Flux's configured constraint selects."""
        if stage not in self._expected:
            self._expected[stage] = self._select_expected(stage)
        return self._expected[stage]

    def _select_expected(self, stage: str) -> ArtifactView | None:
        if self.index is None or stage not in self.stages:
            return None
        if stage == "integration":
            return self.index.newest
        constraint = self.stages[stage].config.semver
        return self.index.by_tag(select_highest(self.index.version_tags, constraint))

    def deployed(self, stage: str) -> ArtifactView | None:
        revision = self.stages[stage].applied_revision if stage in self.stages else None
        if revision is None or self.index is None:
            return None
        return self.index.by_digest(parse_revision(revision)[1])

    @cached_property
    def stage_artifacts(self) -> dict[str, ArtifactView | None]:
        index = self.index
        return {
            "build": index.newest if index else None,
            "validated": index.newest_validated if index else None,
            "release": index.newest_stable if index else None,
            "integration": self.deployed("integration"),
            "live": self.deployed("live"),
        }

    def versions(self) -> tuple[StageArtifact, ...]:
        found = []
        for stage in STAGES:
            artifact = self.stage_artifacts[stage]
            if stage in ("integration", "live"):
                found.extend(self.deployed_version(stage, artifact))
            elif artifact is not None:
                version = artifact.stable if stage == "release" else artifact.version_label
                found.append(
                    StageArtifact(stage, version or "", artifact.revision_label, artifact.digest)
                )
        return tuple(found)

    def deployed_version(self, stage: str, artifact: ArtifactView | None) -> list[StageArtifact]:
        """Deployed versions come from the cluster, so they are known while the registry is down."""
        revision = self.stages[stage].applied_revision if stage in self.stages else None
        if revision is None:
            return []
        tag, digest = parse_revision(revision)
        if not tag and artifact is not None:
            tag = artifact.version_label
        revision_label = artifact.revision_label if artifact is not None else ""
        return [StageArtifact(stage, tag or "", revision_label, digest)]

    def created_times(self) -> dict[str, float]:
        return {
            stage: artifact.created
            for stage, artifact in self.stage_artifacts.items()
            if artifact is not None and artifact.created is not None
        }

    def applied_times(self) -> dict[str, float]:
        times = {name: stage.applied_at() for name, stage in self.stages.items()}
        return {name: at for name, at in times.items() if at is not None}

    # --- Lags ---------------------------------------------------------------------------

    def lags(self) -> dict[str, float]:
        if self.index is None:
            return {}
        lags = {}
        for stage in LAG_STAGES:
            if stage in ("integration", "live") and not self.stage_known(stage):
                continue
            lag = self.lag_behind(self.stage_artifacts[stage])
            if lag is not None:
                lags[stage] = lag
        return lags

    def stage_known(self, stage: str) -> bool:
        """A deployed stage's lag is known when its cluster answered and we know what it runs."""
        if stage not in self.stages or self.stages[stage].cluster is None:
            return False
        revision = self.stages[stage].applied_revision
        return revision is None or self.deployed(stage) is not None

    def lag_behind(self, reached: ArtifactView | None) -> float | None:
        """Age of the oldest build newer than what the stage has reached (0 when current)."""
        assert self.index is not None
        pending = self.index.newer_than(reached)
        if not pending:
            return 0.0
        created = [a.created for a in pending if a.created is not None]
        return max(0.0, self.now - min(created)) if created else None

    def validation_staleness(self) -> float | None:
        if "integration" not in self.stages or self.index is None:
            return None
        applied = self.deployed("integration")
        if applied is None:
            return None
        if applied.validated:
            return 0.0
        applied_at = self.stages["integration"].applied_at()
        return max(0.0, self.now - applied_at) if applied_at is not None else None

    # --- Trees --------------------------------------------------------------------------

    def trees(self) -> tuple[TreeState, ...]:
        trees = []
        if "integration" in self.stages:
            unbuilt = self.unbuilt_head_sha()
            newest = None if unbuilt else self.expected("integration")
            sha = unbuilt or (newest.short_sha if newest else None)
            trees.append(self.walk(INTEGRATION, newest, sha))
        if "live" in self.stages:
            validated = self.index.newest_validated if self.index else None
            trees.append(self.walk(LIVE, validated, validated.short_sha if validated else None))
        return tuple(trees)

    def unbuilt_head_sha(self) -> str | None:
        """The newest watched commit when the registry has no artifact for it yet."""
        head = self.github.head_commit if self.github else None
        if head is None or self.index is None or self.index.by_commit(head.sha):
            return None
        return head.sha[:7]

    def walk(self, tree: Tree, candidate: ArtifactView | None, sha: str | None) -> TreeState:
        nodes = tuple(
            NodeState(node, *NODE_FACTS[node.id](self))
            for node in tree_nodes(tree, self.has_github)
        )
        return TreeState(tree, nodes, sha, candidate.version_label if candidate else None)

    # Integration tree ---------------------------------------------------------------------

    def head_build_runs(self) -> list[WorkflowRun]:
        assert self.github is not None and self.github.head_commit is not None
        return [r for r in self.github.build_runs if r.head_sha == self.github.head_commit.sha]

    def build_succeeded(self) -> tuple[Fact, str]:
        if self.github is None:
            return None, "GitHub is unknown"
        head = self.github.head_commit
        if head is None:
            return True, "no commit touches the watched path"
        runs = self.head_build_runs()
        if not runs:
            return True, f"no build run for {head.sha[:7]} yet"
        newest = runs[0]
        if newest.status == "completed" and newest.conclusion in FAILED_CONCLUSIONS:
            return False, f"build run {newest.id} for {head.sha[:7]} ended {newest.conclusion}"
        return True, f"build run {newest.id} for {head.sha[:7]} is {_run_outcome(newest)}"

    def artifact_in_registry(self) -> tuple[Fact, str]:
        if self.index is None:
            return None, "the registry is unknown"
        if not self.has_github:
            found = self.index.newest
            return (
                (True, f"newest artifact {found.version_label}")
                if found
                else (False, f"{self.pipeline.artifact} has no artifact")
            )
        if self.github is None:
            return None, "GitHub is unknown"
        head = self.github.head_commit
        if head is None:
            return bool(self.index.newest), "no commit touches the watched path"
        if self.index.by_commit(head.sha):
            return True, f"an artifact exists for {head.sha[:7]}"
        if any(run.status != "completed" for run in self.head_build_runs()):
            return True, f"the build for {head.sha[:7]} is still running"
        return False, f"no artifact for commit {head.sha[:7]} in {self.pipeline.artifact}"

    def validation_candidate(self) -> tuple[ArtifactView | None, float | None]:
        """The artifact integration applied, and when; None when nothing is applied yet."""
        applied = self.deployed("integration")
        return applied, self.stages["integration"].applied_at()

    def validation_dispatched(self) -> tuple[Fact, str]:
        if self.index is None or self.stages["integration"].cluster is None:
            return None, "the registry or the integration cluster is unknown"
        candidate, applied_at = self.validation_candidate()
        if candidate is None or candidate.validated:
            return True, _validated_detail(candidate)
        spec_ok, spec_detail = self.notification_spec_ok()
        if not self.has_github:
            return spec_ok, spec_detail
        dispatched, run_detail = self.dispatch_seen(candidate, applied_at)
        fact = all_of(spec_ok, dispatched)
        return fact, spec_detail if spec_ok is False else run_detail

    def dispatch_seen(self, candidate: ArtifactView, applied_at: float | None) -> tuple[Fact, str]:
        runs = self.promote_runs_since(candidate, applied_at)
        if runs is None:
            return None, "GitHub is unknown"
        if runs:
            return True, f"promote run {runs[0].id} started after the apply"
        return False, (
            f"no promote workflow run since integration applied {candidate.version_label}"
        )

    def promote_runs_since(
        self, candidate: ArtifactView, applied_at: float | None
    ) -> list[WorkflowRun] | None:
        if self.github is None:
            return None
        since = applied_at if applied_at is not None else candidate.created
        if since is None:
            return list(self.github.promote_runs)
        return [
            run
            for run in self.github.promote_runs
            if run.created_at is not None and run.created_at >= since - CLOCK_SKEW_SECONDS
        ]

    def notification_spec_ok(self) -> tuple[Fact, str]:
        cluster = self.stages["integration"].cluster
        alert_ref, provider_ref = self.pipeline.alert, self.pipeline.provider
        alert = _lookup(cluster, "alerts", alert_ref)
        provider = _lookup(cluster, "providers", provider_ref)
        if isinstance(alert, Missing):
            return False, _describe_missing("Alert", alert_ref, alert)
        if isinstance(provider, Missing):
            return False, _describe_missing("Provider", provider_ref, provider)
        assert isinstance(alert, AlertData) and isinstance(provider, ProviderData)
        problem = _alert_problem(alert, provider_ref, self.stages["integration"].config) or (
            _provider_problem(provider)
        )
        if problem:
            return False, problem
        return True, f"Alert {alert_ref.name} and Provider {provider_ref.name} are set up"

    def validation_succeeded(self) -> tuple[Fact, str]:
        if self.index is None or self.stages["integration"].cluster is None:
            return None, "the registry or the integration cluster is unknown"
        candidate, applied_at = self.validation_candidate()
        if candidate is None or candidate.validated:
            return True, _validated_detail(candidate)
        runs = self.promote_runs_since(candidate, applied_at)
        if runs is None:
            return None, "GitHub is unknown"
        if not runs or runs[0].status != "completed":
            return True, "no promote run has completed since the apply"
        return False, (
            f"promote run {runs[0].id} ended {runs[0].conclusion} but "
            f"{candidate.version_label} has no validated-{candidate.short_sha} tag"
        )

    # Live tree ----------------------------------------------------------------------------

    def stable_tag_present(self) -> tuple[Fact, str]:
        if self.index is None:
            return None, "the registry is unknown"
        validated = self.index.newest_validated
        if validated is None:
            return True, "no artifact is validated yet"
        if validated.stable is None:
            return False, (
                f"validated-{validated.short_sha} ({validated.version_label}) has no "
                f"stable X.Y.Z tag"
            )
        return True, f"validated-{validated.short_sha} is tagged {validated.stable}"

    def release_is_highest(self) -> tuple[Fact, str]:
        if self.index is None:
            return None, "the registry is unknown"
        validated, expected = self.index.newest_validated, self.expected("live")
        if validated is None or validated.stable is None:
            return True, "no validated release to compare"
        if expected is not None and expected.digest == validated.digest:
            return True, f"{validated.stable} is the highest stable version"
        highest = expected.stable if expected else "none"
        return False, f"newest validated release {validated.stable} is below {highest}"

    def live_not_pinned(self) -> tuple[Fact, str]:
        known = self.source_spec("live")
        if not isinstance(known, OCIRepositoryData):
            return known
        if known.ref_digest is None and (known.ref_tag is None or known.ref_semver):
            return True, "selects by semver"
        pin = known.ref_digest or known.ref_tag
        expected = self.expected("live")
        selected = self.selected_digest(known)[0]
        if expected is None or selected == expected.digest:
            return True, f"pinned to {pin}, which is the newest release"
        return False, f"pinned to {pin}; the newest release is {expected.stable}"

    # Shared by both trees -----------------------------------------------------------------

    def source_spec(self, stage: str) -> OCIRepositoryData | tuple[Fact, str]:
        """The stage's OCIRepository, or the fact to report when it cannot be judged."""
        view = self.stages[stage]
        if self.index is None or view.cluster is None:
            return None, f"the registry or the {view.config.cluster} cluster is unknown"
        source = view.source
        if isinstance(source, Missing):
            return False, _describe_missing("OCIRepository", view.config.source, source)
        assert isinstance(source, OCIRepositoryData)
        return source

    def source_selects(self, stage: str, pins_count: bool) -> tuple[Fact, str]:
        known = self.source_spec(stage)
        if not isinstance(known, OCIRepositoryData):
            return known
        if known.url.removeprefix("oci://").rstrip("/") != self.pipeline.registry_repository:
            return False, f"spec.url is {known.url}, not {self.pipeline.artifact}"
        pinned = known.ref_digest is not None or (
            known.ref_tag is not None and not known.ref_semver
        )
        if pinned and not pins_count:
            return True, "pinned: judged by the next node"
        expected = self.expected(stage)
        if expected is None:
            return True, f"no tag matches {self.stages[stage].config.semver.text} yet"
        selected, how = self.selected_digest(known)
        if selected == expected.digest:
            return True, f"{how} selects {expected.version_label}"
        return False, f"{how} does not select {expected.version_label}"

    def selected_digest(self, source: OCIRepositoryData) -> tuple[str | None, str]:
        """What Flux would select: digest, then semver, then tag, then latest."""
        assert self.index is not None
        if source.ref_digest:
            return source.ref_digest, f"spec.ref.digest {source.ref_digest[:19]}"
        if source.ref_semver:
            try:
                constraint = Constraint.parse(source.ref_semver)
            except ConstraintError:
                return None, f"invalid spec.ref.semver {source.ref_semver!r}"
            try:
                tag = select_highest(self.index.version_tags, constraint, source.ref_semver_filter)
            except re.error:
                return None, f"invalid spec.ref.semverFilter {source.ref_semver_filter!r}"
            found = self.index.by_tag(tag)
            return (found.digest if found else None), f"semver {source.ref_semver!r}"
        tag = source.ref_tag or "latest"
        found = self.index.by_tag(tag)
        return (found.digest if found else None), f"tag {tag!r}"

    def source_ready(self, stage: str) -> tuple[Fact, str]:
        known = self.source_spec(stage)
        if not isinstance(known, OCIRepositoryData):
            return known
        if known.ready is None:
            return False, "the OCIRepository has no Ready condition yet"
        if known.ready.is_true:
            return True, "Ready"
        return False, f"Ready={known.ready.status} {known.ready.reason}: {known.ready.message}"

    def source_current(self, stage: str) -> tuple[Fact, str]:
        known = self.source_spec(stage)
        if not isinstance(known, OCIRepositoryData):
            return known
        expected = self.expected(stage)
        revision = known.artifact_revision or "none"
        # Suspension is only a cause once something newer is waiting to be picked up.
        suspended = " (suspended)" if known.suspended else ""
        if expected is None or parse_revision(revision)[1] == expected.digest:
            return True, f"artifact is {revision}{suspended}"
        if known.suspended:
            return False, f"the OCIRepository is suspended at {revision}"
        return False, f"artifact is {revision}, not {expected.version_label}"

    def applied(self, stage: str) -> tuple[Fact, str]:
        view = self.stages[stage]
        if self.index is None or view.cluster is None:
            return None, f"the registry or the {view.config.cluster} cluster is unknown"
        kustomization = view.kustomization
        if isinstance(kustomization, Missing):
            return False, _describe_missing(
                "Kustomization", view.config.kustomization, kustomization
            )
        assert isinstance(kustomization, KustomizationData)
        return _kustomization_fact(kustomization, self.expected(stage))


NodeFact = Callable[[_PipelineModel], tuple[Fact, str]]

# One fact per node of exporter.trees, by node id.
NODE_FACTS: dict[str, NodeFact] = {
    "build_succeeded": _PipelineModel.build_succeeded,
    "artifact_in_registry": _PipelineModel.artifact_in_registry,
    "integration_source_selects_candidate": lambda m: m.source_selects("integration", True),
    "integration_source_ready": lambda m: m.source_ready("integration"),
    "integration_source_current": lambda m: m.source_current("integration"),
    "integration_applied": lambda m: m.applied("integration"),
    "validation_dispatched": _PipelineModel.validation_dispatched,
    "validation_succeeded": _PipelineModel.validation_succeeded,
    "stable_tag_present": _PipelineModel.stable_tag_present,
    "live_source_selects_release": lambda m: m.source_selects("live", False),
    "live_not_pinned": _PipelineModel.live_not_pinned,
    "release_is_highest": _PipelineModel.release_is_highest,
    "live_source_ready": lambda m: m.source_ready("live"),
    "live_source_current": lambda m: m.source_current("live"),
    "live_applied": lambda m: m.applied("live"),
}


def _kustomization_fact(
    kustomization: KustomizationData, expected: ArtifactView | None
) -> tuple[Fact, str]:
    applied = kustomization.last_applied_revision or "none"
    current = expected is None or parse_revision(applied)[1] == expected.digest
    if kustomization.suspended:
        # Suspended at the newest revision is not stuck yet; behind it, it is the cause.
        if current:
            return True, f"applied {applied} (suspended)"
        return False, f"the Kustomization is suspended at {applied}"
    ready = kustomization.ready
    if ready is None or not ready.is_true:
        reason = f"{ready.reason}: {ready.message}" if ready else "no Ready condition yet"
        return False, f"not Ready: {reason}"
    if current:
        return True, f"applied {applied}"
    assert expected is not None
    return False, f"applied {applied}, not {expected.version_label}"


def _validated_detail(candidate: ArtifactView | None) -> str:
    if candidate is None:
        return "nothing applied in integration yet"
    return f"{candidate.version_label} is tagged validated-{candidate.short_sha}"


def _alert_problem(alert: AlertData, provider: ObjectRef, stage: StageConfig) -> str | None:
    kustomization = stage.kustomization
    watches = any(
        source.kind == "Kustomization"
        and source.name in (kustomization.name, "*")
        and (source.namespace or kustomization.namespace) == kustomization.namespace
        for source in alert.event_sources
    )
    if alert.suspended:
        return "the Alert is suspended"
    if alert.provider_name != provider.name:
        return f"the Alert sends to provider {alert.provider_name}, not {provider.name}"
    if not watches:
        return f"the Alert does not watch Kustomization {kustomization.name}"
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
    if provider.type != "githubdispatch":
        return f"the Provider's type is {provider.type}, not githubdispatch"
    if not provider.secret_name:
        return "the Provider has no secretRef with a GitHub token"
    return None


def _run_outcome(run: WorkflowRun) -> str:
    return run.conclusion or run.status


# --- Cluster-wide and GitHub-wide state -------------------------------------------------


# The kinds a cluster is asked for: the exported kind name and the ClusterData field.
_WANTED_KINDS = (
    ("OCIRepository", "oci_repositories"),
    ("Kustomization", "kustomizations"),
    ("Canary", "canaries"),
    ("Alert", "alerts"),
    ("Provider", "providers"),
)


def cluster_wants(config: Config) -> dict[str, ClusterWants]:
    """The objects each cluster is asked for, gathered from every pipeline that uses it."""
    wants: dict[str, dict[str, set[ObjectRef]]] = {
        name: {field: set() for _kind, field in _WANTED_KINDS} for name in config.clusters
    }
    for pipeline in config.pipelines:
        for stage_name, stage in pipeline.stages.items():
            want = wants[stage.cluster]
            want["oci_repositories"].add(stage.source)
            want["kustomizations"].add(stage.kustomization)
            want["canaries"].update(stage.canaries)
            if stage_name == "integration":
                want["alerts"].add(pipeline.alert)
                want["providers"].add(pipeline.provider)
    return {
        name: ClusterWants(**{field: frozenset(refs) for field, refs in want.items()})
        for name, want in wants.items()
    }


def _wanted(
    wants: dict[str, ClusterWants],
) -> list[tuple[str, str, str, ObjectRef]]:
    """(cluster, kind, ClusterData field, ref) for every wanted object, in a stable order."""
    found = [
        (cluster, kind, field, ref)
        for cluster, want in wants.items()
        for kind, field in _WANTED_KINDS
        for ref in getattr(want, field)
    ]
    return sorted(found, key=lambda w: (w[0], w[1], w[3].namespace, w[3].name))


def _canary_checks(
    wants: dict[str, ClusterWants], snapshot: Snapshot
) -> tuple[CanaryCheckState, ...]:
    checks = []
    for cluster_name, _kind, field, ref in _wanted(wants):
        if field != "canaries":
            continue
        canary = _lookup(snapshot.clusters.get(cluster_name), field, ref)
        if canary is None or isinstance(canary, Missing):
            continue
        for check in canary.checks:
            total = (check.passed_1h or 0) + (check.failed_1h or 0)
            ratio = check.passed_1h / total if check.passed_1h is not None and total else None
            checks.append(
                CanaryCheckState(
                    cluster_name, ref.namespace, ref.name, check.name, check.healthy, ratio
                )
            )
    return tuple(checks)


def _object_presence(
    wants: dict[str, ClusterWants], snapshot: Snapshot
) -> tuple[ObjectPresence, ...]:
    found = []
    for cluster, kind, field, ref in _wanted(wants):
        value = _lookup(snapshot.clusters.get(cluster), field, ref)
        if value is not None:
            found.append(
                ObjectPresence(
                    cluster, kind, ref.namespace, ref.name, not isinstance(value, Missing)
                )
            )
    return tuple(found)


def _helm_releases(snapshot: Snapshot) -> dict[str, HelmReleaseCounts]:
    return {
        name: cluster.helm_releases
        for name, cluster in sorted(snapshot.clusters.items())
        if cluster is not None and isinstance(cluster.helm_releases, HelmReleaseCounts)
    }


def _github_state(github: GitHubData | None) -> GitHubState | None:
    if github is None:
        return None
    workflows = tuple(
        WorkflowState(
            role,
            runs[0].created_at if runs else None,
            _count(_run_outcome(run) for run in runs),
        )
        for role, runs in (("build", github.build_runs), ("promote", github.promote_runs))
    )
    return GitHubState(workflows, _count(status.state for status in github.head_statuses))


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
