"""Unit tests of the pure model on hand-built snapshots (tests/snapshots.py tells the story)."""

from __future__ import annotations

import dataclasses

import pytest

from exporter.artifacts import ArtifactIndex, parse_revision
from exporter.facts import all_of
from exporter.model import State, build_state
from exporter.snapshot import (
    AlertData,
    Artifact,
    EventSource,
    ProviderData,
    RegistryData,
    Snapshot,
)
from tests import snapshots as story


def state_of(snapshot: Snapshot) -> State:
    return build_state(story.pipeline_config(), snapshot)


def node(state: State, node_id: str) -> tuple[bool | None, str]:
    for tree in state.pipelines[0].trees:
        for item in tree.nodes:
            if item.node.id == node_id:
                return item.ok, item.detail
    raise KeyError(node_id)


def with_integration(snapshot: Snapshot, **changes: object) -> Snapshot:
    cluster = snapshot.clusters["integration"]
    assert cluster is not None
    updated = dataclasses.replace(cluster, **changes)
    return dataclasses.replace(snapshot, clusters={**snapshot.clusters, "integration": updated})


def with_alert(snapshot: Snapshot, **changes: object) -> Snapshot:
    cluster = snapshot.clusters["integration"]
    assert cluster is not None
    alert = cluster.alerts[story.ALERT_REF]
    assert isinstance(alert, AlertData)
    return with_integration(
        snapshot, alerts={story.ALERT_REF: dataclasses.replace(alert, **changes)}
    )


def with_provider(snapshot: Snapshot, **changes: object) -> Snapshot:
    cluster = snapshot.clusters["integration"]
    assert cluster is not None
    provider = cluster.providers[story.PROVIDER_REF]
    assert isinstance(provider, ProviderData)
    return with_integration(
        snapshot, providers={story.PROVIDER_REF: dataclasses.replace(provider, **changes)}
    )


def without_promote_runs(snapshot: Snapshot) -> Snapshot:
    github = snapshot.github[story.PIPELINE]
    assert github is not None
    return dataclasses.replace(
        snapshot, github={story.PIPELINE: dataclasses.replace(github, promote_runs=())}
    )


def test_kleene_and() -> None:
    assert all_of(True, True) is True
    assert all_of(True, None) is None
    assert all_of(None, False) is False
    assert all_of() is True


def test_parse_revision_takes_the_manifest_digest_after_the_at() -> None:
    assert parse_revision("0.3.5-rc.1@sha256:abc") == ("0.3.5-rc.1", "sha256:abc")
    assert parse_revision("sha256:abc") == (None, "sha256:abc")


def test_the_story_stops_integration_at_the_newest_build_not_picked_up() -> None:
    state = state_of(story.rich_snapshot())
    ok, detail = node(state, "integration_source_current")
    assert ok is False
    assert "0.3.6-rc.2" in detail


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"event_severity": "error"}, "eventSeverity is error"),
        ({"exclusion_list": ("Reconciliation finished",)}, "drop 'Reconciliation finished'"),
        ({"inclusion_list": (".*Health check passed.*",)}, "drop 'Reconciliation finished'"),
        ({"suspended": True}, "Alert is suspended"),
        ({"provider_name": "slack"}, "provider slack"),
        ({"event_sources": ()}, "does not watch Kustomization flux-system/platform"),
    ],
)
def test_alert_spec_problems_fail_the_dispatch_node(changes: dict, problem: str) -> None:
    snapshot = without_promote_runs(with_alert(story.rich_snapshot(), **changes))
    ok, detail = node(state_of(snapshot), "validation_dispatched")
    assert ok is False
    assert problem in detail


def test_an_alert_watching_every_kustomization_is_fine() -> None:
    snapshot = with_alert(
        story.rich_snapshot(), event_sources=(EventSource("Kustomization", "*", None),)
    )
    ok, _detail = node(state_of(snapshot), "validation_dispatched")
    assert ok is True


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"type": "slack"}, "type is slack, not githubdispatch or github"),
        ({"secret_name": None}, "no secretRef"),
        ({"suspended": True}, "Provider is suspended"),
    ],
)
def test_provider_spec_problems_fail_the_dispatch_node(changes: dict, problem: str) -> None:
    ok, detail = node(
        state_of(with_provider(story.rich_snapshot(), **changes)), "validation_dispatched"
    )
    assert ok is False
    assert problem in detail


def test_a_good_spec_without_a_dispatch_run_fails_like_flux2_3933() -> None:
    ok, detail = node(
        state_of(without_promote_runs(story.rich_snapshot())), "validation_dispatched"
    )
    assert ok is False
    assert "no dispatched promote run since integration applied 0.3.6-rc.1" in detail


def test_an_invalid_semver_filter_in_the_cluster_is_a_finding_not_a_crash() -> None:
    snapshot = story.rich_snapshot()
    cluster = snapshot.clusters["integration"]
    assert cluster is not None
    source = cluster.oci_repositories[story.SOURCE_REF]
    broken = dataclasses.replace(source, ref_semver_filter="(unclosed")
    snapshot = with_integration(snapshot, oci_repositories={story.SOURCE_REF: broken})
    ok, detail = node(state_of(snapshot), "integration_source_selects_candidate")
    assert ok is False
    assert "invalid spec.ref.semverFilter" in detail


def test_lag_is_the_age_of_the_oldest_build_not_yet_at_the_stage() -> None:
    lags = state_of(story.rich_snapshot()).pipelines[0].lags
    assert lags["integration"] == story.NOW - story.NEWEST.created
    assert lags["validated"] == story.NOW - story.IN_INTEGRATION.created
    assert lags["live"] == story.NOW - story.RELEASED.created


def test_undated_builds_without_any_other_time_give_no_lag() -> None:
    snapshot = story.rich_snapshot()
    registry = snapshot.registries[story.PIPELINE]
    assert registry is not None
    undated = tuple(dataclasses.replace(a, created=None) for a in registry.artifacts)
    snapshot = dataclasses.replace(
        snapshot,
        registries={story.PIPELINE: dataclasses.replace(registry, artifacts=undated)},
        github={story.PIPELINE: None},
    )
    # NEWEST has no build time, no build run and no cluster has seen it: its age is unknown.
    assert "integration" not in state_of(snapshot).pipelines[0].lags


def test_artifact_commit_comes_from_the_annotation_then_the_tags() -> None:
    full = "a" * 40
    annotated = Artifact("sha256:1", ("0.1.0", "sha-bbbbbbb"), 1.0, f"main@sha1:{full}", None)
    tag_only = Artifact("sha256:2", ("0.1.1-rc.1", "sha-ccccccc"), 2.0, None, None)
    index = ArtifactIndex(RegistryData("r", (annotated, tag_only), 4, 0))
    assert index.by_digest("sha256:1").commit == full
    assert index.by_digest("sha256:2").commit == "ccccccc"
    assert index.by_commit(full) is index.by_digest("sha256:1")
    assert index.newest is index.by_digest("sha256:2")


def _integration_source(snapshot: Snapshot, **changes: object) -> Snapshot:
    cluster = snapshot.clusters["integration"]
    assert cluster is not None
    source = dataclasses.replace(cluster.oci_repositories[story.SOURCE_REF], **changes)
    return with_integration(snapshot, oci_repositories={story.SOURCE_REF: source})


def test_a_suspended_source_behind_the_newest_build_is_the_cause() -> None:
    snapshot = _integration_source(story.rich_snapshot(), suspended=True)
    ok, detail = node(state_of(snapshot), "integration_source_current")
    assert ok is False
    assert detail == f"the OCIRepository is suspended at {story.INTEGRATION_REVISION}"


def test_a_suspended_source_already_at_the_newest_build_is_not_stuck() -> None:
    newest = story.NEWEST.flux_revision(story.NEWEST.rc)
    snapshot = _integration_source(story.rich_snapshot(), suspended=True, artifact_revision=newest)
    ok, detail = node(state_of(snapshot), "integration_source_current")
    assert ok is True
    assert detail == f"artifact is {newest} (suspended)"
