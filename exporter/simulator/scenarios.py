"""Named situations of the pipeline: every leaf of both trees and every failure-mode row.

Each scenario starts from three healthy releases, then plays one change with some steps
broken. It names where each tree must stop and exactly which alerts must fire once every
`for:` has elapsed. The model tests, the rules tests, `diagnose` and the end-to-end tests all
read this one table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from exporter.simulator.flux_objects import rfc3339
from exporter.simulator.pipeline import Break, PipelineSimulator

HISTORY_RELEASES = 3
CHANGE_AGE = 90 * 60.0  # the change under test merged this long before the final poll
HOUR = 3600.0


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    breaks: frozenset[Break] = frozenset()
    integration_stop: str | None = None  # node id where the integration tree stops
    live_stop: str | None = None
    alerts: frozenset[str] = frozenset()
    failure_mode: str | None = None  # the seed's failure-mode table row it reproduces
    change_age: float = CHANGE_AGE
    play: Callable[[PipelineSimulator], None] | None = None  # replaces the plain release
    down: str | None = None  # a source to take down before the final poll
    inhibited: frozenset[str] = frozenset()  # fire in Prometheus, silenced by Alertmanager
    flow: str = "rc"  # rc, or stable: the build tags X.Y.Z itself and there is no tag workflow
    provider_type: str = "githubdispatch"  # or github: Flux's commit status, `on: status`
    setup: Callable[[PipelineSimulator], None] | None = None  # before the history releases
    # A second pipeline in the same repository and clusters (`Lab(neighbour=True)`), with its
    # own breaks; it releases after the change under test, through the shared tag workflow.
    neighbour: frozenset[Break] | None = None
    neighbour_alerts: frozenset[str] = frozenset()


def _refire_every_ten_minutes(sim: PipelineSimulator) -> None:
    sim.release()
    for _ in range(6):
        sim.advance(600)
        sim.refire()


def _retag_before_validation(sim: PipelineSimulator) -> None:
    """A rollback re-tag (0.0.5) lands while 0.0.4-rc.1 is in integration."""
    sim.merge()
    sim.advance(300)
    sim.build()
    sim.advance(300)
    sim.reconcile("integration")
    sim.retag(sim.builds[0], "0.0.5")
    sim.advance(60)
    sim.dispatch()
    sim.advance(60)
    # Flux polls on its interval: integration follows the higher 0.0.5 too.
    sim.reconcile("integration")
    sim.advance(240)
    sim.reconcile("live")


def _newer_rc_in_flight(sim: PipelineSimulator) -> None:
    """Live follows >= 0.0.0-0 and grabs the RC that integration is still validating."""
    sim.breaks.add(Break.DISPATCH_DROPPED)
    sim.merge()
    sim.advance(300)
    sim.build()
    sim.advance(300)
    sim.reconcile("integration")
    sim.advance(60)
    sim.reconcile("live")
    sim.github.add_run(
        "tag-validated-artifact.yaml",
        sim.head or "",
        event="repository_dispatch",
        status="in_progress",
        conclusion=None,
        created_at=rfc3339(sim.now),
        head_branch="main",
    )


def _rollback_by_retag(sim: PipelineSimulator) -> None:
    """The runbook's rollback option 3: the previous release re-tagged with a higher X.Y.Z;
    both clusters follow it."""
    sim.release()
    sim.advance(600)
    sim.retag(sim.builds[-2], "0.0.9")
    sim.reconcile("integration")
    sim.advance(60)
    sim.reconcile("live")


def _pin_live_to_validated_tag(sim: PipelineSimulator) -> None:
    """A rollback pin to validated-<sha> of the previous release, never reverted."""
    previous = sim.builds[-1]
    sim.release()
    sim.pin("live", f"validated-{previous.short}")
    sim.reconcile("live")


def _manual_and_skipped_runs(sim: PipelineSimulator) -> None:
    """flux2#3933: the dispatch is dropped, but someone ran the tag workflow by hand for an
    older sha, and a stale dispatch run was skipped by the idempotency guard."""
    sim.release()
    for event, conclusion in (("workflow_dispatch", "success"), ("repository_dispatch", "skipped")):
        sim.github.add_run(
            "tag-validated-artifact.yaml",
            sim.builds[-2].commit,
            event=event,
            status="completed",
            conclusion=conclusion,
            created_at=rfc3339(sim.now),
            head_branch="main",
        )
        sim.advance(60)


def _revert_to_old_manifests(sim: PipelineSimulator) -> None:
    """A revert whose manifests equal an old build's: Flux 2.7's History.Upsert reuses that
    old entry, keeping its firstReconciled from days ago."""
    sim.merge('Revert "Update platform manifests"')
    sim.advance(300)
    sim.build(same_manifests_as=sim.builds[-2])
    sim.advance(300)
    sim.reconcile("integration")
    sim.advance(300)


def _skip_ci_head(sim: PipelineSimulator) -> None:
    sim.release()
    sim.advance(600)
    sim.merge("Tidy comments [skip ci]")


def _skip_ci_after_failed_build(sim: PipelineSimulator) -> None:
    """The build failed for a commit; a later docs-only commit skips CI."""
    sim.breaks.add(Break.BUILD_FAILS)
    sim.release()
    sim.advance(600)
    sim.merge("Fix typo\n\nskip-checks: true")


def _alert_moved_to_monitoring(sim: PipelineSimulator) -> None:
    """The Alert and Provider moved to monitoring; the eventSource names no namespace."""
    sim.names = dataclasses.replace(sim.names, alert_namespace="monitoring")
    sim.install_cluster_objects()
    sim.release()


def _reproducible_builds(sim: PipelineSimulator) -> None:
    sim.reproducible = True


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("healthy", "Every change reached live; nothing to say."),
    Scenario(
        "healthy-refiring",
        "The Alert re-fires the tag workflow every ~10 minutes; the guard skips it.",
        failure_mode="Tag workflow fires repeatedly (~10min)",
        play=_refire_every_ten_minutes,
    ),
    Scenario(
        "build-failing",
        "The build workflow failed to push (GHCR auth).",
        breaks=frozenset({Break.BUILD_FAILS}),
        integration_stop="build_succeeded",
        alerts=frozenset({"PromotionBuildFailing"}),
        failure_mode="Artifact push fails in build workflow",
    ),
    Scenario(
        "build-not-triggered",
        "A commit under kubernetes/ but no build ran.",
        breaks=frozenset({Break.BUILD_NOT_TRIGGERED}),
        integration_stop="artifact_in_registry",
        alerts=frozenset({"PromotionArtifactMissing"}),
    ),
    Scenario(
        "integration-semver",
        "Integration's constraint >= 0.0.0 skips the RC tags.",
        breaks=frozenset({Break.INTEGRATION_SEMVER}),
        integration_stop="integration_source_selects_candidate",
        alerts=frozenset({"PromotionIntegrationSemverMismatch"}),
        failure_mode="Build succeeds, integration does not update",
    ),
    Scenario(
        "integration-url",
        "Integration's OCIRepository URL is wrong: no matching artifact.",
        breaks=frozenset({Break.INTEGRATION_URL}),
        integration_stop="integration_source_selects_candidate",
        alerts=frozenset({"PromotionIntegrationSemverMismatch"}),
        failure_mode='Integration shows "no matching artifact"',
    ),
    Scenario(
        "integration-source-failing",
        "Integration cannot authenticate to the registry.",
        breaks=frozenset({Break.INTEGRATION_AUTH}),
        integration_stop="integration_source_ready",
        alerts=frozenset({"PromotionIntegrationSourceFailing"}),
    ),
    Scenario(
        "integration-source-stale",
        "Integration's OCIRepository is suspended.",
        breaks=frozenset({Break.INTEGRATION_SUSPENDED}),
        integration_stop="integration_source_current",
        alerts=frozenset({"PromotionIntegrationSourceStale"}),
    ),
    Scenario(
        "integration-reconcile-failing",
        "The integration Kustomization fails to build.",
        breaks=frozenset({Break.INTEGRATION_RECONCILE}),
        integration_stop="integration_applied",
        alerts=frozenset({"PromotionIntegrationReconcileFailing"}),
    ),
    Scenario(
        "dispatch-dropped",
        "The Alert's repository_dispatch never arrives (flux2#3933, or no repo scope).",
        breaks=frozenset({Break.DISPATCH_DROPPED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
        failure_mode="repository_dispatch not received by GHA",
    ),
    Scenario(
        "alert-misconfigured",
        "The Alert's inclusionList drops 'Reconciliation finished'.",
        breaks=frozenset({Break.ALERT_MISCONFIGURED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
    ),
    Scenario(
        "promote-failing",
        "The tag workflow ran and failed.",
        breaks=frozenset({Break.PROMOTE_FAILS}),
        integration_stop="validation_succeeded",
        alerts=frozenset({"PromotionValidationWorkflowFailing"}),
    ),
    Scenario(
        "stable-tag-missing",
        "validated-<sha> exists but the stable X.Y.Z tag does not.",
        breaks=frozenset({Break.STABLE_TAG_MISSING}),
        live_stop="stable_tag_present",
        alerts=frozenset({"PromotionStableTagMissing"}),
        failure_mode="Validation passes, live does not update",
    ),
    Scenario(
        "live-semver",
        "Live's constraint >= 0.0.0-0 admits the RC in validation.",
        breaks=frozenset({Break.LIVE_SEMVER}),
        live_stop="live_source_selects_release",
        alerts=frozenset({"PromotionLiveSemverMismatch", "PromotionLivePrerelease"}),
        play=_newer_rc_in_flight,
    ),
    Scenario(
        "live-pinned",
        "A rollback pin in live's spec.ref.tag was never reverted.",
        breaks=frozenset({Break.LIVE_PINNED}),
        live_stop="live_not_pinned",
        alerts=frozenset({"PromotionLivePinned"}),
    ),
    Scenario(
        "stable-not-higher",
        "A rollback re-tag 0.0.5 outranks the new release 0.0.4.",
        live_stop="release_is_highest",
        # Both clusters run what Flux ranks highest, so nothing lags: 0.0.4 just never ships.
        alerts=frozenset({"PromotionStableNotHigher"}),
        failure_mode="Live picks up wrong version",
        play=_retag_before_validation,
    ),
    Scenario(
        "live-source-failing",
        "Live cannot authenticate to the registry.",
        breaks=frozenset({Break.LIVE_AUTH}),
        live_stop="live_source_ready",
        alerts=frozenset({"PromotionLiveSourceFailing"}),
    ),
    Scenario(
        "live-source-stale",
        "Live's OCIRepository is suspended.",
        breaks=frozenset({Break.LIVE_SUSPENDED}),
        live_stop="live_source_current",
        alerts=frozenset({"PromotionLiveSourceStale"}),
    ),
    Scenario(
        "live-reconcile-failing",
        "The live Kustomization fails to build.",
        breaks=frozenset({Break.LIVE_RECONCILE}),
        live_stop="live_applied",
        alerts=frozenset({"PromotionLiveReconcileFailing"}),
    ),
    Scenario(
        "canary-failing",
        "canary-checker's flux-pods-healthy check fails.",
        breaks=frozenset({Break.CANARY_FAILING}),
        alerts=frozenset({"PromotionCanaryCheckFailing", "PromotionCanaryFailureRateHigh"}),
    ),
    Scenario(
        "lag-high",
        "Integration's semver has skipped RCs for five hours: the page.",
        breaks=frozenset({Break.INTEGRATION_SEMVER}),
        integration_stop="integration_source_selects_candidate",
        alerts=frozenset({"PromotionIntegrationSemverMismatch", "PromotionLagHigh"}),
        change_age=5 * HOUR,
    ),
    Scenario(
        "validation-stale",
        "No dispatch for three hours: validation is stale.",
        breaks=frozenset({Break.DISPATCH_DROPPED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched", "PromotionValidationStale"}),
        change_age=3 * HOUR,
    ),
    Scenario(
        "registry-down",
        "The registry is unreachable: facts unknown, not false.",
        breaks=frozenset({Break.INTEGRATION_SEMVER}),
        down="registry",
        integration_stop="unknown",
        live_stop="unknown",
        alerts=frozenset({"PromotionSourceDown"}),
    ),
    Scenario(
        "cluster-down",
        "The integration cluster's API is unreachable.",
        breaks=frozenset({Break.INTEGRATION_RECONCILE}),
        down="integration",
        integration_stop="unknown",
        alerts=frozenset({"PromotionSourceDown"}),
    ),
    Scenario(
        "cluster-down-lagging",
        "Integration is unreachable while a five-hour-old build waits: the lag page is "
        "inhibited by PromotionSourceDown.",
        breaks=frozenset({Break.INTEGRATION_RECONCILE}),
        down="integration",
        integration_stop="unknown",
        change_age=5 * HOUR,
        alerts=frozenset({"PromotionSourceDown", "PromotionLagHigh"}),
        inhibited=frozenset({"PromotionLagHigh"}),
    ),
    Scenario(
        "github-down",
        "GitHub answers 500: the build node is unknown.",
        breaks=frozenset({Break.BUILD_FAILS}),
        down="github",
        integration_stop="unknown",
        alerts=frozenset({"PromotionSourceDown"}),
    ),
    Scenario(
        "reconciling-dispatch-dropped",
        "flux2#3933 while kustomize-controller shows Ready=Unknown (Progressing) for a "
        "revision it already applied: the dispatch alert still fires.",
        breaks=frozenset({Break.DISPATCH_DROPPED, Break.INTEGRATION_PROGRESSING}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
    ),
    Scenario(
        "rollback-retag",
        "Rollback option 3: the previous release re-tagged 0.0.9 and both clusters follow it; "
        "the newest build is outranked, which is no fault.",
        play=_rollback_by_retag,
    ),
    Scenario(
        "live-pinned-validated-tag",
        "Live pinned to validated-<sha> of the previous release: a pin, not a pre-release.",
        live_stop="live_not_pinned",
        alerts=frozenset({"PromotionLivePinned"}),
        play=_pin_live_to_validated_tag,
    ),
    Scenario(
        "dispatch-dropped-manual-runs",
        "flux2#3933 beside a manual workflow_dispatch for another sha and a skipped run: "
        "still not dispatched, not a failing workflow.",
        breaks=frozenset({Break.DISPATCH_DROPPED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
        play=_manual_and_skipped_runs,
    ),
    Scenario(
        "revert-history-reuse",
        "A revert equal to an old build reuses its Kustomization history entry; the dispatch "
        "is still awaited and validation is not stale.",
        breaks=frozenset({Break.DISPATCH_DROPPED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
        change_age=20 * 60.0,
        play=_revert_to_old_manifests,
    ),
    Scenario(
        "stable-only", "The stable-only flow: no tag workflow, both follow >= 0.0.0.", flow="stable"
    ),
    Scenario(
        "stable-only-build-failing",
        "The stable-only flow with a failing build.",
        flow="stable",
        breaks=frozenset({Break.BUILD_FAILS}),
        integration_stop="build_succeeded",
        alerts=frozenset({"PromotionBuildFailing"}),
    ),
    Scenario(
        "commit-status-provider",
        "The github commit-status Provider with a tag workflow on: status: healthy.",
        provider_type="github",
    ),
    Scenario(
        "commit-status-dropped",
        "The github commit-status Provider, but no status and no status run arrived.",
        provider_type="github",
        breaks=frozenset({Break.DISPATCH_DROPPED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
    ),
    Scenario(
        "skip-ci-head",
        "The newest commit under the watched path says [skip ci]: no build is awaited.",
        play=_skip_ci_head,
    ),
    Scenario(
        "skip-ci-hides-nothing",
        "A failed build, then a commit with a skip-checks: true trailer: the failure shows.",
        integration_stop="build_succeeded",
        alerts=frozenset({"PromotionBuildFailing"}),
        play=_skip_ci_after_failed_build,
    ),
    Scenario(
        "reproducible-in-flight",
        "Reproducible builds (created 1970) with a release in flight: no 56-year lag.",
        breaks=frozenset({Break.DISPATCH_DROPPED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
        setup=_reproducible_builds,
    ),
    Scenario(
        "reproducible-lag-high",
        "Reproducible builds and integration skipping RCs for five hours: the lag still pages, "
        "measured from the build run.",
        breaks=frozenset({Break.INTEGRATION_SEMVER}),
        integration_stop="integration_source_selects_candidate",
        alerts=frozenset({"PromotionIntegrationSemverMismatch", "PromotionLagHigh"}),
        change_age=5 * HOUR,
        setup=_reproducible_builds,
    ),
    Scenario(
        "canary-neighbour-failing",
        "flux-pods-healthy fails while kubernetes-api, which failed twice earlier in the hour, "
        "passes: only flux-pods-healthy is failing, kubernetes-api cannot tell and is unknown.",
        breaks=frozenset({Break.CANARY_FAILING}),
        alerts=frozenset({"PromotionCanaryCheckFailing", "PromotionCanaryFailureRateHigh"}),
    ),
    Scenario(
        "canary-stopped",
        "canary-checker stopped in live days ago: its Canary's lastCheck and status froze.",
        breaks=frozenset({Break.CANARY_STOPPED}),
        alerts=frozenset({"PromotionCanaryStale"}),
    ),
    Scenario(
        "canary-missing",
        "The platform-validation Canary was deleted from live.",
        breaks=frozenset({Break.CANARY_MISSING}),
        alerts=frozenset({"PromotionCanaryStale"}),
    ),
    Scenario(
        "two-pipelines-neighbour-dispatched",
        "Two pipelines share the repository and the seed's tag workflow. Platform's dispatch "
        "was dropped (fluxcd/flux2#3933); apps released after it through the shared workflow, "
        "whose runs are titled by run-name. Apps' run, commits and builds are not platform's.",
        breaks=frozenset({Break.DISPATCH_DROPPED}),
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
        neighbour=frozenset(),
    ),
    Scenario(
        "two-pipelines-neighbour-build-failing",
        "Two pipelines share the repository: apps' own build workflow fails after platform "
        "released. Only apps is stuck, at its build.",
        neighbour=frozenset({Break.BUILD_FAILS}),
        neighbour_alerts=frozenset({"PromotionBuildFailing"}),
    ),
    Scenario(
        "alert-event-source-namespace",
        "The Alert moved to monitoring, its eventSource naming Kustomization platform without a "
        "namespace: notification-controller looks in the Alert's own namespace, so it never "
        "sees flux-system/platform and no dispatch is sent.",
        integration_stop="validation_dispatched",
        alerts=frozenset({"PromotionValidationNotDispatched"}),
        play=_alert_moved_to_monitoring,
    ),
    Scenario(
        "live-helmrelease-failing",
        "Live applied the release, but the podinfo HelmRelease's upgrade timed out.",
        breaks=frozenset({Break.HELM_RELEASE_FAILING}),
        live_stop="live_helm_releases_ready",
        alerts=frozenset({"PromotionLiveHelmReleaseFailing"}),
    ),
)

SCENARIOS_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def play(
    sim: PipelineSimulator,
    scenario: Scenario,
    end: float,
    neighbour: PipelineSimulator | None = None,
) -> None:
    """History up to the change, then the change with its breaks, ending at `end`. A
    neighbour pipeline releases after each release of this one, on the same clock."""
    if scenario.setup is not None:
        scenario.setup(sim)
    sim.install_cluster_objects()
    for _ in range(HISTORY_RELEASES):
        sim.release()
        _neighbour_release(sim, neighbour)
    sim.now = end - scenario.change_age
    sim.breaks.update(scenario.breaks)
    sim.install_cluster_objects()
    if scenario.play is not None:
        scenario.play(sim)
    else:
        sim.release()
    if neighbour is not None:
        neighbour.breaks.update(scenario.neighbour or ())
        neighbour.install_cluster_objects()
    _neighbour_release(sim, neighbour)
    sim.now = end
    if neighbour is not None:
        neighbour.now = end
    # canary-checker runs every minute, so its latest run is the poll's minute.
    sim.run_canaries()


def _neighbour_release(sim: PipelineSimulator, neighbour: PipelineSimulator | None) -> None:
    if neighbour is None:
        return
    if not neighbour.builds:
        neighbour.install_cluster_objects()
    neighbour.now = sim.now
    neighbour.release()
    sim.now = neighbour.now
