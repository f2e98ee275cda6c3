"""The seed's promotion pipeline, played against fake wire APIs.

Each step does what the real actor does: the build workflow pushes a Flux artifact and tags
it, source-controller selects a tag with Flux's semver rules, kustomize-controller applies it,
the Alert dispatches, the tag workflow adds validated-<sha> and X.Y.Z, and canary-checker
writes its results. Every step can be broken (`Break`) to reproduce a row of the seed's
failure-mode table. Time is the simulator's own clock, so a scenario can say "two hours ago".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from exporter.simulator import flux_objects as flux
from exporter.simulator import flux_select
from exporter.simulator.githubapi import FakeGitHub
from exporter.simulator.kubeapi import FakeKubeAPI
from exporter.simulator.oci import push_flux_artifact, tag_artifact

BUILD_WORKFLOW = "build-platform-artifact.yaml"
PROMOTE_WORKFLOW = "tag-validated-artifact.yaml"
INTEGRATION_SEMVER = ">= 0.0.0-0"
LIVE_SEMVER = ">= 0.0.0"


class Break(StrEnum):
    """One broken step; the value names the seed's symptom in a few words."""

    BUILD_FAILS = "build-fails"  # the push fails: GHCR auth, packages:write missing
    BUILD_NOT_TRIGGERED = "build-not-triggered"
    INTEGRATION_SEMVER = "integration-semver"  # constraint >= 0.0.0 skips the RC tags
    INTEGRATION_URL = "integration-url"  # "no matching artifact": wrong oci_url
    INTEGRATION_AUTH = "integration-auth"
    INTEGRATION_SUSPENDED = "integration-suspended"
    INTEGRATION_RECONCILE = "integration-reconcile"
    # kustomize-controller's Ready=Unknown "Reconciliation in progress" at the poll.
    INTEGRATION_PROGRESSING = "integration-progressing"
    DISPATCH_DROPPED = "dispatch-dropped"  # fluxcd/flux2#3933, or a token without repo scope
    ALERT_MISCONFIGURED = "alert-misconfigured"
    PROMOTE_FAILS = "promote-fails"
    STABLE_TAG_MISSING = "stable-tag-missing"
    LIVE_SEMVER = "live-semver"  # constraint >= 0.0.0-0 admits pre-releases
    LIVE_PINNED = "live-pinned"  # a rollback pin left in spec.ref.tag
    LIVE_AUTH = "live-auth"
    LIVE_SUSPENDED = "live-suspended"
    LIVE_RECONCILE = "live-reconcile"
    CANARY_FAILING = "canary-failing"
    CANARY_STOPPED = "canary-stopped"  # canary-checker stopped: live's lastCheck stays frozen
    CANARY_MISSING = "canary-missing"  # live's Canary deleted
    HELM_RELEASE_FAILING = "helm-release-failing"  # a HelmRelease in live: Ready=False


@dataclass(frozen=True)
class Names:
    """What one pipeline's Flux objects and workflows are called: the seed's by default."""

    kustomization: str = "platform"
    source: str = "flux-system"
    alert: str = "validation-success"
    # The Alert and its Provider; the Kustomization is always in flux-system.
    alert_namespace: str = "flux-system"
    build_workflow: str = BUILD_WORKFLOW
    promote_workflow: str = PROMOTE_WORKFLOW
    watch_path: str = "kubernetes/"
    # The cluster-wide furniture: the Provider, the canaries and the HelmReleases.
    furniture: bool = True
    # A tag workflow shared by pipelines titles its runs `run-name: ${{ github.event.action }}`
    # (the dispatch's event_type) or the commit status's context.
    titles_runs: bool = False


@dataclass
class Build:
    commit: str
    version: str
    digest: str
    created: float
    content: str  # what the manifests are: equal content, equal manifests digest

    @property
    def short(self) -> str:
        return self.commit[:7]


@dataclass
class _Stage:
    """What one cluster's Flux has selected and applied."""

    api: FakeKubeAPI
    semver: str
    revision: str | None = None
    fetched_at: float = 0.0
    applied: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    legacy_flux: bool = False  # Flux 2.5: OCIRepository v1beta2, no Kustomization history
    pin: str | None = None  # spec.ref.tag set by hand, without semver


class PipelineSimulator:
    """Drives the registry, both clusters and GitHub through the pipeline's steps."""

    def __init__(
        self,
        *,
        registry_url: str,
        repository: str,
        integration: FakeKubeAPI | None,
        live: FakeKubeAPI,
        github: FakeGitHub,
        start: float,
        flow: str = "rc",
        registry_auth: tuple[str, str] | None = None,
        provider_type: str = "githubdispatch",
        names: Names | None = None,
    ) -> None:
        self.names = names or Names()
        self.registry_url = registry_url
        self.repository = repository
        self.artifact_url = f"oci://{registry_url.split('://', 1)[1]}/{repository}"
        self.github = github
        self.now = start
        self.flow = flow
        self.provider_type = provider_type  # githubdispatch, or github (commit status)
        self.reproducible = False  # flux push artifact --reproducible: created is the epoch
        self.auth = registry_auth
        self.breaks: set[Break] = set()
        self.builds: list[Build] = []
        self.tags: dict[str, str] = {}
        self.head: str | None = None
        self.stages = {"live": _Stage(live, LIVE_SEMVER)}
        if integration is not None:
            semver = INTEGRATION_SEMVER if flow == "rc" else LIVE_SEMVER
            self.stages["integration"] = _Stage(integration, semver)
        self._commits = 0

    def clock(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    # --- GitHub and the build -------------------------------------------------------------

    def merge(self, message: str = "Update platform manifests") -> str:
        """A PR touching kubernetes/ lands on main."""
        self._commits += 1
        sha = hashlib.sha1(f"{self.repository}:{self._commits}".encode()).hexdigest()
        changed = (f"{self.names.watch_path}kustomization.yaml",)
        self.github.add_commit(sha, flux.rfc3339(self.now), files=changed, message=message)
        self.head = sha
        return sha

    def build(self, same_manifests_as: Build | None = None) -> Build | None:
        """The build workflow: version from the highest stable tag, push, tag."""
        if Break.BUILD_NOT_TRIGGERED in self.breaks or self.head is None:
            return None
        failed = Break.BUILD_FAILS in self.breaks
        self.github.add_run(
            self.names.build_workflow,
            self.head,
            event="push",
            status="completed",
            conclusion="failure" if failed else "success",
            created_at=flux.rfc3339(self.now),
            head_branch="main",
        )
        if failed:
            return None
        version = self._next_version()
        content = same_manifests_as.content if same_manifests_as else f"manifests of {self.head}"
        digest = push_flux_artifact(
            self.registry_url,
            self.repository,
            version,
            revision=flux.git_revision(self.head),
            source="https://github.com/owner/homelab",
            created=flux.rfc3339(0 if self.reproducible else self.now),
            content={"version.txt": version.encode()},
            auth=self.auth,
        )
        build = Build(self.head, version, digest, self.now, content)
        self.builds.append(build)
        self.tags[version] = digest
        extra = ("sha", "integration") if self.flow == "rc" else ("sha", "validated")
        for prefix in extra:
            self._tag(build, f"{prefix}-{build.short}")
        return build

    def _next_version(self) -> str:
        versions = (flux_select.parse_version(tag) for tag in self.tags)
        stable = [(v.major, v.minor, v.patch) for v in versions if v and not v.prerelease]
        major, minor, patch = max(stable, default=(0, 0, 0))
        base = f"{major}.{minor}.{patch + 1}"
        if self.flow != "rc":
            return base
        candidates = sum(1 for tag in self.tags if tag.startswith(f"{base}-rc."))
        return f"{base}-rc.{candidates + 1}"

    def _tag(self, build: Build, tag: str) -> None:
        tag_artifact(self.registry_url, self.repository, build.digest, tag, auth=self.auth)
        self.tags[tag] = build.digest

    def pin(self, stage_name: str, tag: str) -> None:
        """The runbook's rollback option 1: spec.ref.tag in place of the semver."""
        self.stages[stage_name].pin = tag

    def retag(self, build: Build, stable: str) -> None:
        """The seed's rollback option 3: a higher stable tag on a known-good artifact."""
        self._tag(build, stable)

    # --- Flux in a cluster ----------------------------------------------------------------

    def reconcile(self, stage_name: str) -> None:
        """source-controller selects and stores a tag, kustomize-controller applies it."""
        stage = self.stages[stage_name]
        broken = {b.value.split("-", 1)[1] for b in self.breaks if b.value.startswith(stage_name)}
        spec = self._source_spec(stage_name, stage, broken)
        selected = self._select(spec)
        ready: bool | str = True
        reason, message = None, None
        if "progressing" in broken:
            ready, reason, message = "Unknown", "Progressing", "Reconciliation in progress"
        if "auth" in broken:
            ready, reason = False, "AuthenticationFailed"
            message = f"failed to get credential from 'generic': 401 Unauthorized for {spec['url']}"
        elif selected is None:
            ready = False
        elif "suspended" not in broken:
            stage.revision, stage.fetched_at = f"{selected}@{self.tags[selected]}", self.now
        stage.api.put(
            flux.oci_repository(
                name=self.names.source,
                api_version=flux.OCI_REPOSITORY_V1,
                url=spec["url"],
                semver=spec.get("semver"),
                tag=spec.get("tag"),
                suspend="suspended" in broken,
                ready=ready,
                reason=reason,
                message=message,
                revision=stage.revision,
                last_update=stage.fetched_at or self.now,
            )
        )
        self._apply(stage, failing="reconcile" in broken, progressing="progressing" in broken)

    def _source_spec(self, stage_name: str, stage: _Stage, broken: set[str]) -> dict[str, str]:
        url = self.artifact_url + ("-typo" if "url" in broken else "")
        if stage.pin:
            return {"url": url, "tag": stage.pin}
        if "pinned" in broken and stage.revision:
            return {"url": url, "tag": stage.revision.split("@", 1)[0]}
        semver = stage.semver
        if "semver" in broken:
            semver = LIVE_SEMVER if stage_name == "integration" else INTEGRATION_SEMVER
        return {"url": url, "semver": semver}

    def _select(self, spec: dict[str, str]) -> str | None:
        if not spec["url"].endswith(self.repository):
            return None
        return flux_select.select_tag(self.tags, semver=spec.get("semver"), tag=spec.get("tag"))

    def _apply(self, stage: _Stage, failing: bool, progressing: bool = False) -> None:
        attempted = stage.revision
        if not failing and attempted and attempted != stage.applied:
            stage.applied = attempted
            self._upsert_history(stage, attempted)
        ready: bool | str = not failing
        reason, message = None, None
        if failing:
            reason = "BuildFailed"
            message = "kustomize build failed: accumulating resources: missing Resource"
        elif progressing:
            ready, reason, message = "Unknown", "Progressing", "Reconciliation in progress"
        stage.api.put(
            flux.kustomization(
                name=self.names.kustomization,
                source_name=self.names.source,
                ready=ready,
                reason=reason,
                message=message,
                last_applied_revision=stage.applied,
                last_attempted_revision=attempted,
                history=stage.history,
                transition=self.now,
            )
        )

    def _upsert_history(self, stage: _Stage, revision: str) -> None:
        """kustomize-controller's History.Upsert (Flux 2.7): the entry whose manifests digest
        matches is updated in place, keeping its firstReconciled; the newest comes first."""
        build = self._build_of(revision)
        digest = flux.sha256_of(f"manifests:{build.content if build else revision}")
        entry = next((e for e in stage.history if e["digest"] == digest), None)
        if entry is None:
            entry = flux.history_entry(revision, first_reconciled=self.now)
            entry["digest"] = digest
        else:
            stage.history.remove(entry)
            entry["metadata"]["revision"] = revision
            entry["lastReconciled"] = flux.rfc3339(self.now)
            entry["totalReconciliations"] += 1
        stage.history.insert(0, entry)
        del stage.history[5:]

    # --- Validation and promotion --------------------------------------------------------

    def dispatch(self) -> int | None:
        """The Alert's repository_dispatch (or, for the github Provider, Flux's commit status
        and the tag workflow `on: status`) starts the tag workflow, which tags the build."""
        if self.flow != "rc":
            return None
        if Break.DISPATCH_DROPPED in self.breaks or Break.ALERT_MISCONFIGURED in self.breaks:
            return None
        if self.names.alert_namespace != "flux-system":
            # An eventSource without a namespace is in the Alert's own: it never sees ours.
            return None
        applied = self.stages["integration"].applied
        build = self._build_of(applied)
        if self.provider_type == "github" and build is not None:
            context = self._status_context
            self.github.add_status(build.commit, context, "success", created_at=self.now)
        conclusion = "failure" if Break.PROMOTE_FAILS in self.breaks else "success"
        run = self._promote_run(conclusion)
        if build is not None and conclusion == "success":
            self.promote(build)
        return run

    def promote(self, build: Build) -> None:
        """tag-validated-artifact: validated-<sha>, then the RC suffix stripped (idempotent)."""
        if f"validated-{build.short}" in self.tags:
            return
        self._tag(build, f"validated-{build.short}")
        if Break.STABLE_TAG_MISSING not in self.breaks:
            self._tag(build, build.version.split("-", 1)[0])

    @property
    def _dispatch_event(self) -> str:
        return "status" if self.provider_type == "github" else "repository_dispatch"

    @property
    def _status_context(self) -> str:
        """notification-controller's github Provider: context kind/name/<provider hash>."""
        return f"kustomization/{self.names.kustomization}/{flux.sha256_of('provider')[7:15]}"

    def _promote_run(self, conclusion: str) -> int:
        """A run of the tag workflow that the Alert started."""
        title = None
        if self.names.titles_runs:
            # githubdispatch's event_type is Kind/name.namespace.
            dispatch_title = f"Kustomization/{self.names.kustomization}.flux-system"
            title = self._status_context if self.provider_type == "github" else dispatch_title
        return self.github.add_run(
            self.names.promote_workflow,
            self.head or "0" * 40,
            event=self._dispatch_event,
            status="completed",
            conclusion=conclusion,
            created_at=flux.rfc3339(self.now),
            head_branch="main",
            run_name=title,
        )

    def refire(self) -> None:
        """The Alert fires again on the next reconciliation; the guard makes it a no-op."""
        self._promote_run("success")

    def _build_of(self, revision: str | None) -> Build | None:
        digest = revision.rsplit("@", 1)[-1] if revision else None
        return next((b for b in reversed(self.builds) if b.digest == digest), None)

    # --- Cluster furniture ---------------------------------------------------------------

    def install_cluster_objects(self) -> None:
        """The Alert, Provider, canaries and HelmReleases a bootstrapped cluster has."""
        integration = self.stages.get("integration")
        # The stable-only flow has no tag workflow, so no Alert or Provider to start it.
        if integration is not None and self.flow == "rc":
            misconfigured = Break.ALERT_MISCONFIGURED in self.breaks
            integration.api.put(
                flux.alert(
                    name=self.names.alert,
                    namespace=self.names.alert_namespace,
                    event_sources=[{"kind": "Kustomization", "name": self.names.kustomization}],
                    inclusion_list=(".*Health check passed.*",)
                    if misconfigured
                    else (".*Reconciliation finished.*",),
                )
            )
            if self.names.furniture:
                integration.api.put(
                    flux.provider(
                        namespace=self.names.alert_namespace, provider_type=self.provider_type
                    )
                )
        if not self.names.furniture:
            return
        for name, stage in self.stages.items():
            failing = name == "live" and Break.HELM_RELEASE_FAILING in self.breaks
            stage.api.put(flux.helm_release("podinfo", "apps", ready=not failing))
        self.run_canaries()

    def run_canaries(self) -> None:
        """canary-checker's latest run in each cluster, reported at the simulator's now."""
        if not self.names.furniture:
            return
        checks = self._canary_checks()
        for name, stage in self.stages.items():
            if name == "live" and Break.CANARY_MISSING in self.breaks:
                stage.api.delete(flux.CANARY_V1, "Canary", "monitoring", "platform-validation")
            elif name != "live" or Break.CANARY_STOPPED not in self.breaks:
                stage.api.put(flux.canary(checks=checks, last_check=self.now))

    def _canary_checks(self) -> dict[str, flux.CheckRun]:
        failing = Break.CANARY_FAILING in self.breaks
        return {
            # A failure early in the hour, passing since: its own entry cannot tell which
            # result came last, and its failing neighbour must not decide it.
            "kubernetes-api": flux.CheckRun(passed=58, failed=2) if failing else flux.CheckRun(60),
            "flux-pods-healthy": flux.CheckRun(
                passed=0 if failing else 60,
                failed=60 if failing else 0,
                error="pod source-controller not ready",
            ),
        }

    # --- The whole happy path ------------------------------------------------------------

    def release(self, step_seconds: float = 300.0) -> Build | None:
        """One change end to end; a broken step stops it where the real pipeline would."""
        self.merge()
        self.advance(step_seconds)
        build = self.build()
        self.advance(step_seconds)
        if "integration" in self.stages:
            self.reconcile("integration")
            self.advance(60)
            self.dispatch()
            self.advance(step_seconds)
        self.reconcile("live")
        self.advance(step_seconds)
        return build
