"""Named situations of the pipeline: every leaf of both trees and every failure-mode row.

Each scenario starts from three healthy releases, then plays one change with some steps
broken. It names where each tree must stop and exactly which alerts must fire once every
`for:` has elapsed. The model tests, the rules tests, `diagnose` and the end-to-end tests all
read this one table.
"""

from __future__ import annotations

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
    sim.advance(300)
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
        integration_stop="integration_source_selects_candidate",
        live_stop="release_is_highest",
        # Live runs the three-day-old artifact the rollback re-tagged, so the lag pages too.
        alerts=frozenset(
            {"PromotionStableNotHigher", "PromotionIntegrationSemverMismatch", "PromotionLagHigh"}
        ),
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
)

SCENARIOS_BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def play(sim: PipelineSimulator, scenario: Scenario, end: float) -> None:
    """History up to the change, then the change with its breaks, ending at `end`."""
    sim.install_cluster_objects()
    for _ in range(HISTORY_RELEASES):
        sim.release()
    sim.now = end - scenario.change_age
    sim.breaks.update(scenario.breaks)
    sim.install_cluster_objects()
    if scenario.play is not None:
        scenario.play(sim)
    else:
        sim.release()
    sim.now = end
