"""Hand-built configs and snapshots shaped like what the clients return from a real pipeline.

The story: four builds of `platform`. 0.3.4 and 0.3.5 went all the way through; 0.3.6-rc.1 is
applied in integration but not validated yet; 0.3.6-rc.2 was built half an hour ago and Flux
has not picked it up. Live still runs 0.3.4. A third cluster, `dev`, is configured but down.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from exporter.config import Config, parse_config
from exporter.snapshot import (
    AlertData,
    Artifact,
    CanaryCheck,
    CanaryData,
    ClusterData,
    Commit,
    CommitStatus,
    Condition,
    ErrorReason,
    EventSource,
    GitHubData,
    HelmReleaseStatus,
    HistoryEntry,
    KustomizationData,
    ObjectRef,
    OCIRepositoryData,
    ProviderData,
    RateLimit,
    RegistryData,
    Snapshot,
    SourceStatus,
    WorkflowRun,
)

NOW = 1_750_000_000.0
HOUR = 3600.0
DAY = 86400.0

PIPELINE = "platform"
REPOSITORY = "ghcr.io/owner/homelab/platform"
GITHUB_REPOSITORY = "owner/homelab"
SOURCE_REF = ObjectRef("flux-system", "flux-system")
KUSTOMIZATION_REF = ObjectRef("flux-system", "platform")
CANARY_REF = ObjectRef("monitoring", "platform-validation")
ALERT_REF = ObjectRef("flux-system", "validation-success")
PROVIDER_REF = ObjectRef("flux-system", "github-dispatch")
IGNORED_TAGS = ("latest",)


def config_dict() -> dict[str, Any]:
    """The raw YAML of the seed's pipeline, plus a configured cluster no pipeline uses."""
    return {
        "interval": "30s",
        "github": {"repository": GITHUB_REPOSITORY, "token_env": "PROMOTION_TEST_TOKEN"},
        "clusters": {
            "integration": {"kubeconfig": "/nonexistent/integration.yaml"},
            "live": {"kubeconfig": "/nonexistent/live.yaml"},
            "dev": {"kubeconfig": "/nonexistent/dev.yaml"},
        },
        "pipelines": [
            {
                "name": PIPELINE,
                "artifact": f"oci://{REPOSITORY}",
                "stages": {
                    "integration": {"cluster": "integration"},
                    "live": {"cluster": "live"},
                },
            }
        ],
    }


def pipeline_config() -> Config:
    return parse_config(config_dict())


@dataclass(frozen=True)
class Build:
    """One artifact of the story, with what the tests expect to read back from it."""

    commit: str  # 40 hex
    rc: str
    stable: str | None
    validated: bool
    created: float

    @property
    def short_sha(self) -> str:
        return self.commit[:7]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.commit.encode()).hexdigest()

    @property
    def revision(self) -> str:
        """The org.opencontainers.image.revision annotation `flux push artifact` writes."""
        return f"main@sha1:{self.commit}"

    @property
    def tags(self) -> tuple[str, ...]:
        tags = [self.rc, f"sha-{self.short_sha}", f"integration-{self.short_sha}"]
        if self.validated:
            tags.append(f"validated-{self.short_sha}")
        if self.stable:
            tags.append(self.stable)
        return tuple(tags)

    def flux_revision(self, tag: str) -> str:
        """OCIRepository .status.artifact.revision for a tag or semver ref."""
        return f"{tag}@{self.digest}"

    def artifact(self) -> Artifact:
        return Artifact(
            digest=self.digest,
            tags=self.tags,
            created=self.created,
            revision=self.revision,
            source="https://github.com/owner/homelab",
        )


def _commit(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


OLDEST = Build(_commit("one"), "0.3.4-rc.1", "0.3.4", validated=True, created=NOW - 10 * DAY)
RELEASED = Build(_commit("two"), "0.3.5-rc.1", "0.3.5", validated=True, created=NOW - 3 * DAY)
IN_INTEGRATION = Build(
    _commit("three"), "0.3.6-rc.1", None, validated=False, created=NOW - 2 * HOUR
)
NEWEST = Build(_commit("four"), "0.3.6-rc.2", None, validated=False, created=NOW - 0.5 * HOUR)
BUILDS = (OLDEST, RELEASED, IN_INTEGRATION, NEWEST)

INTEGRATION_APPLIED_AT = IN_INTEGRATION.created + 120  # from Kustomization .status.history
LIVE_SOURCE_UPDATED_AT = RELEASED.created - DAY  # no history on live: Flux older than 2.7


def registry() -> RegistryData:
    tag_count = sum(len(build.tags) for build in BUILDS) + len(IGNORED_TAGS)
    return RegistryData(
        repository=REPOSITORY,
        artifacts=tuple(build.artifact() for build in BUILDS),
        tag_count=tag_count,
        ignored_tags=len(IGNORED_TAGS),
    )


def _ready(reason: str, message: str) -> Condition:
    return Condition("Ready", "True", reason, message)


def _source(semver: str, revision: str, updated: float) -> OCIRepositoryData:
    return OCIRepositoryData(
        api_version="source.toolkit.fluxcd.io/v1",
        url=f"oci://{REPOSITORY}",
        ref_semver=semver,
        ref_semver_filter=None,
        ref_tag=None,
        ref_digest=None,
        suspended=False,
        ready=_ready("Succeeded", f"stored artifact for revision '{revision}'"),
        artifact_revision=revision,
        artifact_last_update=updated,
    )


def _kustomization(revision: str, history: tuple[HistoryEntry, ...]) -> KustomizationData:
    return KustomizationData(
        suspended=False,
        ready=_ready("ReconciliationSucceeded", f"Applied revision: {revision}"),
        last_applied_revision=revision,
        history=history,
    )


def _canary(*checks: CanaryCheck) -> CanaryData:
    return CanaryData(checks, last_check=NOW - 30, interval_seconds=60.0)  # "@every 1m"


def _check(name: str, healthy: bool | None, passed: int | None, failed: int | None) -> CanaryCheck:
    last = NOW - 30 if healthy is not None else None
    return CanaryCheck(name, healthy, passed, failed, last, "" if healthy else "no data")


INTEGRATION_REVISION = IN_INTEGRATION.flux_revision(IN_INTEGRATION.rc)
LIVE_REVISION = OLDEST.flux_revision(OLDEST.stable or "")


def integration_cluster() -> ClusterData:
    history = (
        HistoryEntry(
            INTEGRATION_REVISION, INTEGRATION_APPLIED_AT, NOW - 60, "ReconciliationSucceeded"
        ),
        HistoryEntry(
            RELEASED.flux_revision(RELEASED.rc),
            RELEASED.created + 60,
            IN_INTEGRATION.created,
            "ReconciliationSucceeded",
        ),
    )
    return ClusterData(
        # The source's own update time differs from history, so the tests see which one is used.
        oci_repositories={
            SOURCE_REF: _source(">= 0.0.0-0", INTEGRATION_REVISION, INTEGRATION_APPLIED_AT - 30)
        },
        kustomizations={KUSTOMIZATION_REF: _kustomization(INTEGRATION_REVISION, history)},
        canaries={
            CANARY_REF: _canary(
                _check("kubernetes-api", True, 60, 0),
                _check("flux-pods-healthy", False, 36, 24),
                _check("dns-resolves", None, None, None),
            )
        },
        alerts={
            ALERT_REF: AlertData(
                provider_name=PROVIDER_REF.name,
                event_severity="info",
                event_sources=(EventSource("Kustomization", "platform", "flux-system"),),
                inclusion_list=(".*Reconciliation finished.*",),
                exclusion_list=(),
                suspended=False,
            )
        },
        providers={PROVIDER_REF: ProviderData("githubdispatch", "github-token", False)},
        helm_releases=_helm_releases(ready=11, total=12),
    )


def live_cluster() -> ClusterData:
    return ClusterData(
        oci_repositories={
            SOURCE_REF: _source(">= 0.0.0", LIVE_REVISION, LIVE_SOURCE_UPDATED_AT),
        },
        kustomizations={KUSTOMIZATION_REF: _kustomization(LIVE_REVISION, ())},
        canaries={
            CANARY_REF: _canary(
                _check("kubernetes-api", True, 60, 0), _check("flux-pods-healthy", True, 60, 0)
            )
        },
        helm_releases=_helm_releases(ready=12, total=12),
    )


def _helm_releases(ready: int, total: int) -> tuple[HelmReleaseStatus, ...]:
    """HelmReleases as helm-controller reports them; those past `ready` failed an upgrade."""
    return tuple(
        HelmReleaseStatus("apps", f"app-{i}", True, "UpgradeSucceeded", "Helm upgrade succeeded")
        if i < ready
        else HelmReleaseStatus(
            "apps", f"app-{i}", False, "UpgradeFailed", "Helm upgrade failed: context deadline"
        )
        for i in range(total)
    )


def _run(run_id: int, build: Build, event: str, conclusion: str | None, created: float):
    return WorkflowRun(
        id=run_id,
        head_sha=build.commit,
        event=event,
        status="completed" if conclusion else "in_progress",
        conclusion=conclusion,
        created_at=created,
        updated_at=created + 90,
    )


RATE_LIMIT = RateLimit(limit=5000, remaining=4321, reset=NOW + 1800)


HEAD_COMMIT = Commit(NEWEST.commit, NEWEST.created - 300, "Bump podinfo to 6.7.1 (#42)")


def github() -> GitHubData:
    return GitHubData(
        head_commit=HEAD_COMMIT,
        commits=(
            HEAD_COMMIT,
            Commit(IN_INTEGRATION.commit, IN_INTEGRATION.created - 300, "Add loki (#41)"),
        ),
        build_workflow_found=True,
        promote_workflow_found=True,
        build_runs=(
            _run(104, NEWEST, "push", "success", NEWEST.created - 240),
            _run(103, IN_INTEGRATION, "push", "success", IN_INTEGRATION.created - 240),
            _run(102, IN_INTEGRATION, "push", "failure", IN_INTEGRATION.created - 900),
        ),
        promote_runs=(
            _run(203, NEWEST, "repository_dispatch", None, INTEGRATION_APPLIED_AT + 30),
            _run(202, RELEASED, "repository_dispatch", "success", RELEASED.created + 120),
        ),
        statuses={
            NEWEST.commit: (
                CommitStatus("kustomization/platform/1a2b3c4d", "success", NOW - 600),
                CommitStatus("ci/lint", "pending", NOW - 500),
            )
        },
        rate_limit=RATE_LIMIT,
    )


def _up(kind: str, name: str, duration: float) -> SourceStatus:
    return SourceStatus(kind, name, True, duration, NOW, None, NOW)


def _down(kind: str, name: str, reason: ErrorReason) -> SourceStatus:
    return SourceStatus(kind, name, False, 2.0, NOW - 600, reason, NOW)


def rich_snapshot() -> Snapshot:
    return Snapshot(
        taken_at=NOW,
        registries={PIPELINE: registry()},
        clusters={"integration": integration_cluster(), "live": live_cluster(), "dev": None},
        github={PIPELINE: github()},
        sources=(
            _up("registry", REPOSITORY, 0.8),
            _up("cluster", "integration", 0.3),
            _up("cluster", "live", 0.4),
            _down("cluster", "dev", ErrorReason.UNREACHABLE),
            _up("github", GITHUB_REPOSITORY, 0.5),
        ),
        github_rate_limit=RATE_LIMIT,
    )


def registry_down(snapshot: Snapshot) -> Snapshot:
    """The same poll, except that the registry answered 503."""
    sources = tuple(
        _down(s.kind, s.name, ErrorReason.SERVER_ERROR) if s.kind == "registry" else s
        for s in snapshot.sources
    )
    return dataclasses.replace(snapshot, registries={PIPELINE: None}, sources=sources)


def identifying_strings() -> set[str]:
    """Every tag, sha and digest of the story: only promotion_version_info may carry these."""
    found = set(IGNORED_TAGS)
    for build in BUILDS:
        found.update(build.tags)
        found.update({build.commit, build.short_sha, build.digest, build.digest.split(":")[1]})
    return found
