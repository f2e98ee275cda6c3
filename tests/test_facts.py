"""Node facts on real-shaped Flux objects: what kustomize-controller, source-controller and
GitHub write in the states our own worlds once never produced."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from exporter.config import load_config, parse_config
from exporter.kube import parse_kustomization, parse_oci_repository
from exporter.model import build_state
from exporter.simulator import flux_objects as flux
from exporter.snapshot import (
    Commit,
    CommitStatus,
    EventSource,
    HistoryEntry,
    KustomizationData,
    ObjectRef,
    Snapshot,
)
from tests import snapshots as story
from tests.test_model import node, state_of, with_alert, with_integration, with_provider

APPLIED = story.INTEGRATION_REVISION


def _github(snapshot: Snapshot, **changes: object) -> Snapshot:
    github = snapshot.github[story.PIPELINE]
    assert github is not None
    return dataclasses.replace(
        snapshot, github={story.PIPELINE: dataclasses.replace(github, **changes)}
    )


def _kustomization(snapshot: Snapshot, raw: dict) -> Snapshot:
    return with_integration(
        snapshot, kustomizations={story.KUSTOMIZATION_REF: parse_kustomization(raw)}
    )


def _progressing_kustomization(last_applied: str, attempted: str) -> dict:
    """kustomize-controller at the start of a reconcile: Ready=Unknown, Reconciling=True."""
    return flux.kustomization(
        ready="Unknown",
        reason="Progressing",
        message="Reconciliation in progress",
        last_applied_revision=last_applied,
        last_attempted_revision=attempted,
        history=[flux.history_entry(last_applied, first_reconciled=story.INTEGRATION_APPLIED_AT)],
    )


def test_reconciling_an_applied_revision_again_counts_as_applied() -> None:
    raw = _progressing_kustomization(APPLIED, APPLIED)
    assert parse_kustomization(raw).ready.status == "Unknown"
    snapshot = _kustomization(story.rich_snapshot(), raw)
    newest = story.NEWEST.flux_revision(story.NEWEST.rc)
    source = dataclasses.replace(
        story.integration_cluster().oci_repositories[story.SOURCE_REF], artifact_revision=newest
    )
    state = state_of(snapshot)
    ok, detail = node(state, "integration_applied")
    # The newest build is not applied yet: Progressing towards it is no success.
    assert ok is False
    snapshot = with_integration(
        _kustomization(story.rich_snapshot(), _progressing_kustomization(newest, newest)),
        oci_repositories={story.SOURCE_REF: source},
    )
    ok, detail = node(state_of(snapshot), "integration_applied")
    assert ok is True
    assert "reconciling again (Progressing)" in detail


def test_a_source_reconciling_with_an_artifact_is_ready() -> None:
    raw = flux.oci_repository(
        ready="Unknown",
        reason="Progressing",
        message="building artifact",
        revision=APPLIED,
        url=f"oci://{story.REPOSITORY}",
    )
    source = parse_oci_repository(raw)
    snapshot = with_integration(story.rich_snapshot(), oci_repositories={story.SOURCE_REF: source})
    ok, detail = node(state_of(snapshot), "integration_source_ready")
    assert ok is True
    assert "reconciling" in detail
    without_artifact = dataclasses.replace(source, artifact_revision=None)
    snapshot = with_integration(
        story.rich_snapshot(), oci_repositories={story.SOURCE_REF: without_artifact}
    )
    assert node(state_of(snapshot), "integration_source_ready")[0] is False


def test_a_reused_history_entry_never_dates_the_apply_before_the_build() -> None:
    """Flux 2.7 History.Upsert: a revert equal to an old build keeps that entry's
    firstReconciled from days ago."""
    reused = HistoryEntry(
        APPLIED, story.NOW - 5 * story.DAY, story.NOW - 60, "ReconciliationSucceeded"
    )
    cluster = story.integration_cluster()
    kustomization = cluster.kustomizations[story.KUSTOMIZATION_REF]
    assert isinstance(kustomization, KustomizationData)
    snapshot = with_integration(
        story.rich_snapshot(),
        kustomizations={
            story.KUSTOMIZATION_REF: dataclasses.replace(kustomization, history=(reused,))
        },
    )
    pipeline = state_of(snapshot).pipelines[0]
    assert pipeline.applied["integration"] == story.IN_INTEGRATION.created
    assert pipeline.validation_staleness == story.NOW - story.IN_INTEGRATION.created


def _run(run_id: int, event: str, conclusion: str | None, created: float):
    return dataclasses.replace(
        story.github().promote_runs[0],
        id=run_id,
        event=event,
        status="completed" if conclusion else "in_progress",
        conclusion=conclusion,
        created_at=created,
    )


def test_manual_and_skipped_runs_are_not_the_dispatch() -> None:
    after = story.INTEGRATION_APPLIED_AT + 60
    runs = (
        _run(301, "workflow_dispatch", "success", after),
        _run(302, "repository_dispatch", "skipped", after),
    )
    state = state_of(_github(story.rich_snapshot(), promote_runs=runs))
    ok, detail = node(state, "validation_dispatched")
    assert ok is False
    assert "no dispatched promote run" in detail


def test_a_shared_tag_workflow_run_titled_for_another_kustomization_is_not_the_dispatch() -> None:
    after = story.INTEGRATION_APPLIED_AT + 60

    def dispatched(title: str) -> bool | None:
        run = dataclasses.replace(
            _run(501, "repository_dispatch", "success", after), display_title=title
        )
        snapshot = _github(story.rich_snapshot(), promote_runs=(run,))
        return node(state_of(snapshot), "validation_dispatched")[0]

    # run-name: ${{ github.event.action }} is githubdispatch's event_type Kind/name.namespace.
    assert dispatched("Kustomization/platform.flux-system") is True
    assert dispatched("Kustomization/apps.flux-system") is False
    assert dispatched("Kustomization/platform.other-namespace") is False
    # The github Provider's commit-status context kustomization/<name>/<hash>.
    assert dispatched("kustomization/apps/5f3c1a2b") is False
    assert dispatched("kustomization/platform/5f3c1a2b") is True
    # An untitled run cannot tell whose it is.
    assert dispatched("tag-validated-artifact") is True


def test_the_commit_status_provider_is_dispatched_by_a_status_run() -> None:
    snapshot = with_provider(story.rich_snapshot(), type="github")
    after = story.INTEGRATION_APPLIED_AT + 60
    dispatched = _github(snapshot, promote_runs=(_run(401, "status", "success", after),))
    assert node(state_of(dispatched), "validation_dispatched") == (
        True,
        "promote run 401 (status) started after the apply",
    )
    # A repository_dispatch run is not what the github Provider causes.
    other = _github(snapshot, promote_runs=(_run(402, "repository_dispatch", "success", after),))
    assert node(state_of(other), "validation_dispatched")[0] is False


def test_the_commit_status_provider_is_dispatched_by_flux_own_status() -> None:
    snapshot = with_provider(story.rich_snapshot(), type="github")
    status = CommitStatus(
        "kustomization/platform/5f3c1a2b", "success", story.INTEGRATION_APPLIED_AT + 5
    )
    snapshot = _github(snapshot, promote_runs=(), statuses={story.IN_INTEGRATION.commit: (status,)})
    ok, detail = node(state_of(snapshot), "validation_dispatched")
    assert ok is True
    assert "commit status" in detail


def test_a_failed_status_run_fails_the_workflow_node() -> None:
    snapshot = with_provider(story.rich_snapshot(), type="github")
    runs = (_run(403, "status", "failure", story.INTEGRATION_APPLIED_AT + 60),)
    ok, detail = node(state_of(_github(snapshot, promote_runs=runs)), "validation_succeeded")
    assert ok is False
    assert "promote run 403 ended failure" in detail


def test_a_missing_tag_workflow_is_a_finding_on_its_node() -> None:
    snapshot = _github(story.rich_snapshot(), promote_runs=(), promote_workflow_found=False)
    snapshot = with_provider(snapshot)  # the dispatch spec is fine
    state = state_of(snapshot)
    ok, detail = node(state, "validation_succeeded")
    assert ok is False
    assert "was not found" in detail


def test_a_skip_ci_head_commit_is_not_awaited() -> None:
    github = story.github()
    skipped = Commit("f" * 40, story.NOW - 60, "docs: typo [skip ci]")
    snapshot = _github(
        story.rich_snapshot(), head_commit=skipped, commits=(skipped, *github.commits)
    )
    state = state_of(snapshot)
    assert node(state, "artifact_in_registry")[0] is True
    assert state.pipelines[0].trees[0].candidate_sha == story.NEWEST.short_sha


def test_a_pr_commit_is_built_by_the_push_of_its_merge() -> None:
    """A non-squash merge: the path-filtered list names the PR's commit, the push run the
    merge commit, which the artifact carries."""
    pr_commit = Commit("e" * 40, story.NEWEST.created - 3600, "Bump podinfo")
    snapshot = _github(story.rich_snapshot(), head_commit=pr_commit, commits=(pr_commit,))
    state = state_of(snapshot)
    assert node(state, "artifact_in_registry")[0] is True
    assert node(state, "build_succeeded")[0] is True


def test_reproducible_builds_take_the_build_run_time() -> None:
    snapshot = story.rich_snapshot()
    registry = snapshot.registries[story.PIPELINE]
    assert registry is not None
    epoch = tuple(dataclasses.replace(a, created=0.0) for a in registry.artifacts)
    snapshot = dataclasses.replace(
        snapshot, registries={story.PIPELINE: dataclasses.replace(registry, artifacts=epoch)}
    )
    lags = state_of(snapshot).pipelines[0].lags
    newest_run = story.github().build_runs[0]
    assert newest_run.updated_at is not None
    assert lags["integration"] == story.NOW - newest_run.updated_at
    assert all(lag < 30 * story.DAY for lag in lags.values())


def test_the_alert_event_source_namespace_defaults_to_the_alerts_own() -> None:
    """notification-controller: an eventSource without a namespace is in the Alert's."""
    unnamespaced = (EventSource("Kustomization", "platform", None),)
    snapshot = with_alert(story.rich_snapshot(), event_sources=unnamespaced)
    assert node(state_of(snapshot), "validation_dispatched")[0] is True
    config = story.config_dict()
    config["pipelines"][0]["alert"] = {"namespace": "notifications", "name": "validation-success"}
    cluster = snapshot.clusters["integration"]
    assert cluster is not None
    moved = ObjectRef("notifications", "validation-success")
    snapshot = with_integration(snapshot, alerts={moved: cluster.alerts[story.ALERT_REF]})
    ok, detail = node(build_state(parse_config(config), snapshot), "validation_dispatched")
    assert ok is False
    assert "does not watch Kustomization flux-system/platform" in detail


def test_both_provider_types_are_accepted_and_others_refused() -> None:
    for provider_type in ("githubdispatch", "github"):
        snapshot = with_provider(story.rich_snapshot(), type=provider_type)
        assert "type" not in node(state_of(snapshot), "validation_dispatched")[1]
    snapshot = with_provider(story.rich_snapshot(), type="slack")
    ok, detail = node(state_of(snapshot), "validation_dispatched")
    assert ok is False
    assert "type is slack, not githubdispatch or github" in detail


def test_the_stable_only_example_has_no_tag_workflow_or_dispatch_nodes() -> None:
    config = load_config(Path(__file__).parents[1] / "examples" / "config.stable-only.yml")
    state = build_state(config, story.rich_snapshot())
    present = {n.node.id for tree in state.pipelines[0].trees for n in tree.nodes}
    assert "build_succeeded" in present
    assert not {"validation_dispatched", "validation_succeeded"} & present
    assert all(w.role != "promote" for g in state.github for w in g.workflows)
