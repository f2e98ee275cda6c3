"""One pipeline as one poll saw it: typed accessors over its config and the snapshot.

The node facts (exporter.facts) and the stage figures (exporter.model) read the sources only
through this view, so what "the artifact integration should run" or "when live applied it"
means is written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from exporter.artifacts import EARLIEST_BUILD_TIME, ArtifactIndex, ArtifactView, parse_revision
from exporter.config import PipelineConfig, StageConfig
from exporter.snapshot import (
    ClusterData,
    Commit,
    GitHubData,
    HistoryEntry,
    KustomizationData,
    Missing,
    OCIRepositoryData,
    ProviderData,
    Snapshot,
    WorkflowRun,
)
from exporter.trees import Source, Wiring
from exporter.versions import Constraint, ConstraintError, Version, parse_tag, select_highest

# GitHub skips push workflows for a head commit whose message carries one of these.
_SKIP_CI = re.compile(r"\[(skip ci|ci skip|no ci|skip actions|actions skip)\]", re.IGNORECASE)
_SKIP_CHECKS_TRAILER = re.compile(r"^skip-checks:\s*true\s*$", re.IGNORECASE | re.MULTILINE)
# Tolerance between a cluster's clock and GitHub's when ordering their events.
CLOCK_SKEW_SECONDS = 15.0


def skips_ci(commit: Commit) -> bool:
    """GitHub runs no push workflow for this commit (docs: 'Skipping workflow runs')."""
    message = commit.message
    return bool(_SKIP_CI.search(message) or _SKIP_CHECKS_TRAILER.search(message))


def is_pin(source: OCIRepositoryData) -> bool:
    """Flux's precedence: a digest always pins, a tag pins only without semver."""
    return source.ref_digest is not None or (source.ref_tag is not None and not source.ref_semver)


def wiring(pipeline: PipelineConfig) -> frozenset[Wiring]:
    """What the pipeline's config wires up; a node that needs more is absent."""
    wired = set()
    github = pipeline.github
    if github is not None:
        wired.add(Wiring.GITHUB)
        if github.promote_workflow is not None:
            wired.add(Wiring.PROMOTE_WORKFLOW)
    if pipeline.alert is not None and pipeline.provider is not None:
        wired.add(Wiring.DISPATCH)
    return frozenset(wired)


@dataclass(frozen=True)
class Selection:
    """What an OCIRepository's spec.ref selects from the current tags."""

    artifact: ArtifactView | None
    how: str  # e.g. "semver '>= 0.0.0'"
    valid: bool = True


@dataclass(frozen=True)
class StageView:
    name: str
    config: StageConfig
    cluster: ClusterData | None  # None: the cluster is down

    @property
    def source(self) -> OCIRepositoryData | Missing | None:
        if self.cluster is None:
            return None
        return self.cluster.oci_repositories.get(self.config.source, Missing.NOT_FOUND)

    @property
    def kustomization(self) -> KustomizationData | Missing | None:
        if self.cluster is None:
            return None
        return self.cluster.kustomizations.get(self.config.kustomization, Missing.NOT_FOUND)

    @property
    def applied_revision(self) -> str | None:
        kustomization = self.kustomization
        if isinstance(kustomization, KustomizationData):
            return kustomization.last_applied_revision
        return None

    def history_for(self, digest: str) -> list[HistoryEntry]:
        kustomization = self.kustomization
        if not isinstance(kustomization, KustomizationData):
            return []
        return [e for e in kustomization.history if parse_revision(e.revision)[1] == digest]

    def _reconciled(self, digest: str) -> list[float]:
        return [e.first_reconciled for e in self.history_for(digest) if e.first_reconciled]

    def _fetched(self, digest: str) -> float | None:
        """When the OCIRepository stored the digest, if it serves it now."""
        source = self.source
        if (
            isinstance(source, OCIRepositoryData)
            and source.artifact_revision
            and parse_revision(source.artifact_revision)[1] == digest
        ):
            return source.artifact_last_update
        return None

    def applied_at(self, digest: str) -> float | None:
        """When this cluster first reconciled the digest: its history entry (Flux 2.7+),
        else the source's artifact update time."""
        reconciled = self._reconciled(digest)
        return reconciled[0] if reconciled else self._fetched(digest)

    def first_seen(self, digest: str) -> float | None:
        """The earliest time this cluster reports for the digest: fetched or applied."""
        fetched = self._fetched(digest)
        times = self._reconciled(digest) + ([fetched] if fetched else [])
        return min(times) if times else None


class PipelineView:
    """One pipeline's config and its part of one snapshot."""

    def __init__(self, pipeline: PipelineConfig, snapshot: Snapshot) -> None:
        self.pipeline = pipeline
        self.now = snapshot.taken_at
        registry = snapshot.registries.get(pipeline.name)
        self.registry = registry
        self.index = ArtifactIndex(registry) if registry is not None else None
        self.github: GitHubData | None = snapshot.github.get(pipeline.name)
        self.stages = {
            name: StageView(name, stage, snapshot.clusters.get(stage.cluster))
            for name, stage in pipeline.stages.items()
        }

    # --- What is configured and what answered ----------------------------------------------

    @cached_property
    def wired(self) -> frozenset[Wiring]:
        return wiring(self.pipeline)

    def unknown_source(self, reads: frozenset[Source]) -> str | None:
        """The first configured source among `reads` that did not answer, as words."""
        for source in sorted(reads):
            if source is Source.REGISTRY and self.index is None:
                return "the registry is unknown"
            if source is Source.GITHUB and Wiring.GITHUB in self.wired and self.github is None:
                return "GitHub is unknown"
            stage = self.stages.get(source.value)
            if stage is not None and stage.cluster is None:
                return f"the {stage.config.cluster} cluster is unknown"
        return None

    @property
    def known_index(self) -> ArtifactIndex:
        """The index, for facts whose guard has already checked the registry answered."""
        assert self.index is not None
        return self.index

    @property
    def known_github(self) -> GitHubData:
        assert self.github is not None
        return self.github

    # --- Flux's selection -----------------------------------------------------------------

    def select(self, source: OCIRepositoryData) -> Selection:
        """What source-controller selects: digest, then semver, then tag, then latest."""
        index = self.known_index
        if source.ref_digest:
            return Selection(
                index.by_digest(source.ref_digest), f"spec.ref.digest {source.ref_digest[:19]}"
            )
        if source.ref_semver:
            how = f"semver {source.ref_semver!r}"
            try:
                constraint = Constraint.parse(source.ref_semver)
                tag = select_highest(index.version_tags, constraint, source.ref_semver_filter)
            except ConstraintError:
                return Selection(None, f"invalid spec.ref.semver {source.ref_semver!r}", False)
            except re.error:
                filter_ = source.ref_semver_filter
                return Selection(None, f"invalid spec.ref.semverFilter {filter_!r}", False)
            return Selection(index.by_tag(tag), how)
        tag = source.ref_tag or "latest"
        return Selection(index.by_tag(tag), f"tag {tag!r}")

    @cached_property
    def _expected(self) -> dict[str, ArtifactView | None]:
        index = self.known_index
        return {
            name: index.by_tag(select_highest(index.version_tags, stage.config.semver))
            for name, stage in self.stages.items()
        }

    def expected(self, stage: str) -> ArtifactView | None:
        """What the stage should run: what its configured constraint selects today."""
        return self._expected.get(stage) if self.index is not None else None

    def deployed(self, stage: str) -> ArtifactView | None:
        revision = self.stages[stage].applied_revision if stage in self.stages else None
        if revision is None or self.index is None:
            return None
        return self.index.by_digest(parse_revision(revision)[1])

    def deployed_rank(self, stage: str) -> Version | None:
        """The version Flux ranks the applied revision by: its tag, else the artifact's."""
        revision = self.stages[stage].applied_revision if stage in self.stages else None
        if revision is None:
            return None
        tag = parse_revision(revision)[0]
        version = parse_tag(tag) if tag else None
        if version is not None:
            return version
        artifact = self.deployed(stage)
        return artifact.rank if artifact is not None else None

    def reached(
        self, build: ArtifactView, there: ArtifactView | None, rank: Version | None
    ) -> bool:
        """A build has reached a stage that runs it, a newer build, or a version ranked higher."""
        if there is not None and there.order_key >= build.order_key:
            return True
        return rank is not None and build.rank is not None and rank > build.rank

    @cached_property
    def outranked_build(self) -> tuple[ArtifactView, ArtifactView] | None:
        """The newest build and the older artifact whose higher version outranks it."""
        index = self.index
        newest = index.newest if index else None
        if index is None or newest is None or newest.rank is None:
            return None
        higher = [(rank, v) for v in index.views if (rank := v.rank) and rank > newest.rank]
        if not higher:
            return None
        return newest, max(higher, key=lambda pair: pair[0])[1]

    # --- Times that exist -----------------------------------------------------------------

    def build_time(self, artifact: ArtifactView) -> float | None:
        """The build time: the annotation, else the build run for its commit, else the
        earliest fetch or apply a cluster reports. Never the epoch."""
        if artifact.created is not None:
            return artifact.created
        run_time = self._build_run_time(artifact)
        if run_time is not None:
            return run_time
        seen = [t for s in self.stages.values() if (t := s.first_seen(artifact.digest))]
        return min(seen) if seen else None

    def _build_run_time(self, artifact: ArtifactView) -> float | None:
        if self.github is None or artifact.commit is None:
            return None
        for run in self.github.build_runs:
            if artifact.matches_commit(run.head_sha) and run.conclusion == "success":
                time = run.updated_at or run.created_at
                if time is not None and time >= EARLIEST_BUILD_TIME:
                    return time
        return None

    def applied_at(self, stage: str) -> float | None:
        """When the stage first reconciled what it runs, never before that artifact was built:
        Flux 2.7's History.Upsert keeps an old entry's firstReconciled for equal manifests."""
        view = self.stages.get(stage)
        revision = view.applied_revision if view else None
        if view is None or revision is None:
            return None
        seen = view.applied_at(parse_revision(revision)[1])
        artifact = self.deployed(stage)
        built = self.build_time(artifact) if artifact is not None else None
        if seen is None or built is None:
            return seen
        return max(seen, built)

    def integration_applied_at(self, artifact: ArtifactView) -> float | None:
        """When integration first applied this artifact, from its Kustomization history (or
        its source, while it still serves it); never before the artifact was built."""
        view = self.stages.get("integration")
        seen = view.applied_at(artifact.digest) if view is not None else None
        built = self.build_time(artifact)
        return max(seen, built) if seen is not None and built is not None else seen

    def commit_time(self, artifact: ArtifactView) -> float | None:
        """The committer date of the artifact's commit, when it is among the commits read."""
        if self.github is None or artifact.commit is None:
            return None
        dates = [c.date for c in self.github.commits if c.date and artifact.matches_commit(c.sha)]
        return dates[0] if dates else None

    def rolled_back(self, stage: str) -> bool | None:
        """The stage runs a pin, or an artifact built before another one its Kustomization
        history shows it ran: a rollback. Unknown while the cluster or the registry is."""
        view = self.stages.get(stage)
        if view is None or view.cluster is None or self.index is None:
            return None
        source = view.source
        if isinstance(source, OCIRepositoryData) and is_pin(source):
            return True
        current = self.deployed(stage)
        kustomization = view.kustomization
        if current is None or not isinstance(kustomization, KustomizationData):
            return False
        ran = (self.index.by_digest(parse_revision(e.revision)[1]) for e in kustomization.history)
        return any(other is not None and other.order_key > current.order_key for other in ran)

    # --- GitHub -----------------------------------------------------------------------------

    @cached_property
    def awaited_commit(self) -> Commit | None:
        """The newest watched commit GitHub will build: one that skips CI is not awaited."""
        github = self.github
        if github is None:
            return None
        commits = github.commits or ((github.head_commit,) if github.head_commit else ())
        return next((commit for commit in commits if not skips_ci(commit)), None)

    def build_runs_for(self, commit: Commit) -> list[WorkflowRun]:
        """Build runs that contain the commit, newest first: its own, or a later push's (a
        non-squash merge runs for the merge commit, not for the PR's commits)."""
        runs = self.known_github.build_runs
        own = [run for run in runs if run.head_sha == commit.sha]
        if own or commit.date is None:
            return own
        since = commit.date - CLOCK_SKEW_SECONDS
        return [
            run
            for run in runs
            if run.event == "push" and run.created_at is not None and run.created_at >= since
        ]

    def artifact_for(self, commit: Commit) -> ArtifactView | None:
        index = self.known_index
        found = index.by_commit(commit.sha)
        if found is not None:
            return found
        for run in self.build_runs_for(commit):
            found = index.by_commit(run.head_sha)
            if found is not None:
                return found
        return None

    def provider(self) -> ProviderData | Missing | None:
        cluster = self.stages["integration"].cluster if "integration" in self.stages else None
        ref = self.pipeline.provider
        if cluster is None or ref is None:
            return None
        return cluster.providers.get(ref, Missing.NOT_FOUND)
