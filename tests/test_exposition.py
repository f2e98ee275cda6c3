"""The exposition contract: a rich hand-built snapshot rendered through the real collector."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter import docs
from exporter.collector import PromotionCollector
from exporter.config import Config
from exporter.model import StageArtifact, build_state
from exporter.poller import Poller
from exporter.snapshot import ErrorReason, HistoryEntry, KustomizationData, Snapshot
from exporter.trees import TREES, Source
from tests import snapshots
from tests.snapshots import (
    DAY,
    IN_INTEGRATION,
    INTEGRATION_APPLIED_AT,
    LIVE_SOURCE_UPDATED_AT,
    NEWEST,
    NOW,
    OLDEST,
    PIPELINE,
    RELEASED,
    REPOSITORY,
)

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
PROMTOOL = "/usr/bin/promtool"
_TABLE_ROW = re.compile(r"^\| `(?P<name>\w+)` \| (?P<type>\w+) \| (?P<labels>[^|]+) \|")


@pytest.fixture
def config() -> Config:
    return snapshots.pipeline_config()


@pytest.fixture
def poller(config: Config) -> Iterator[Poller]:
    # A real Poller: its clients connect lazily, so constructing it sends nothing.
    poller = Poller(config)
    yield poller
    poller.close()


def render(poller: Poller, config: Config, snapshot: Snapshot) -> str:
    poller.state = replace(
        build_state(config, snapshot),
        polls=7,
        source_errors={("cluster", "dev", ErrorReason.UNREACHABLE.value): 3},
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PromotionCollector(poller))
    return generate_latest(registry).decode()


@pytest.fixture
def exposition(poller: Poller, config: Config) -> str:
    return render(poller, config, snapshots.rich_snapshot())


@pytest.fixture
def registry_down_exposition(poller: Poller, config: Config) -> str:
    return render(poller, config, snapshots.registry_down(snapshots.rich_snapshot()))


def samples(text: str, name: str | None = None) -> list[Sample]:
    found = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return [s for s in found if name is None or s.name == name]


def value(text: str, metric: str, /, **labels: str) -> float:
    matching = [s.value for s in samples(text, metric) if labels.items() <= s.labels.items()]
    assert len(matching) == 1, f"{metric}{labels}: {len(matching)} series"
    return matching[0]


def documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/metrics.md as {sample name: (type, label names)}."""
    table = {}
    for line in (DOCS_DIR / docs.METRICS_FILE).read_text().splitlines():
        row = _TABLE_ROW.match(line)
        if row:
            labels = frozenset(re.findall(r"`(\w+)`", row["labels"]))
            table[row["name"]] = (row["type"], labels)
    return table


# --- The documented families and labels ----------------------------------------------------


def test_docs_table_parses_every_row() -> None:
    table = documented_metrics()
    assert len(table) >= 25
    assert table["promotion_version_info"] == (
        "gauge",
        frozenset({"pipeline", "stage", "version", "revision", "digest"}),
    )
    assert table["promotion_polls_total"] == ("counter", frozenset())


def test_every_documented_family_is_exposed_with_its_labels_and_nothing_else(
    exposition: str,
) -> None:
    exposed: dict[str, tuple[str, set[frozenset[str]]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            _type, label_sets = exposed.setdefault(sample.name, (family.type, set()))
            label_sets.add(frozenset(sample.labels))
    documented = documented_metrics()
    assert set(exposed) == set(documented)
    for name, (type_, label_sets) in exposed.items():
        assert (type_, label_sets) == (documented[name][0], {documented[name][1]}), name


def promtool_check_metrics(exposition: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


@pytest.mark.skipif(not shutil.which(PROMTOOL), reason="promtool is not installed")
def test_promtool_finds_no_problems(exposition: str) -> None:
    result = promtool_check_metrics(exposition)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.skipif(not shutil.which(PROMTOOL), reason="promtool is not installed")
def test_promtool_check_is_able_to_fail() -> None:
    bad = "# HELP promotion_bad x\n# TYPE promotion_bad counter\npromotion_bad 1\n"
    result = promtool_check_metrics(bad)
    assert result.returncode != 0
    assert "_total" in result.stdout + result.stderr


# --- Contract values -----------------------------------------------------------------------


def test_version_info_per_stage(exposition: str) -> None:
    found = {s.labels["stage"]: s.labels for s in samples(exposition, "promotion_version_info")}
    expected = {
        "build": (NEWEST, NEWEST.rc),
        "integration": (IN_INTEGRATION, IN_INTEGRATION.rc),
        "validated": (RELEASED, RELEASED.stable),
        "release": (RELEASED, RELEASED.stable),
        "live": (OLDEST, OLDEST.stable),
    }
    assert set(found) == set(expected)
    for stage, (build, version) in expected.items():
        assert found[stage] == {
            "pipeline": PIPELINE,
            "stage": stage,
            "version": version,
            "revision": build.revision,
            "digest": build.digest,
        }, stage
    assert {s.value for s in samples(exposition, "promotion_version_info")} == {1.0}


def test_version_prerelease_per_stage(exposition: str) -> None:
    found = {
        s.labels["stage"]: s.value for s in samples(exposition, "promotion_version_prerelease")
    }
    assert found == {"build": 1, "integration": 1, "validated": 0, "release": 0, "live": 0}


def test_version_prerelease_is_absent_for_a_tag_that_is_no_semver(
    poller: Poller, config: Config
) -> None:
    state = build_state(config, snapshots.rich_snapshot())
    pipeline = state.pipelines[0]
    pin = StageArtifact("live", "validated-abc1234", "", "sha256:" + "ab" * 32, None)
    versions = (*(v for v in pipeline.versions if v.stage != "live"), pin)
    poller.state = replace(state, pipelines=(replace(pipeline, versions=versions),))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PromotionCollector(poller))
    exposition = generate_latest(registry).decode()
    assert value(exposition, "promotion_version_info", stage="live") == 1
    stages = {s.labels["stage"] for s in samples(exposition, "promotion_version_prerelease")}
    assert stages == {"build", "integration", "validated", "release"}


def test_deployed_digest_is_the_manifest_digest_of_the_flux_revision(exposition: str) -> None:
    revision = snapshots.INTEGRATION_REVISION
    (integration,) = [
        s
        for s in samples(exposition, "promotion_version_info")
        if s.labels["stage"] == "integration"
    ]
    digest = integration.labels["digest"]
    assert digest == revision.split("@", 1)[1]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)


def test_lag_seconds(exposition: str) -> None:
    lags = {
        s.labels["stage"]: s.value
        for s in samples(exposition, "promotion_lag_seconds")
        if s.labels["pipeline"] == PIPELINE
    }
    assert lags == {
        "integration": NOW - NEWEST.created,
        "validated": NOW - IN_INTEGRATION.created,
        "release": NOW - IN_INTEGRATION.created,
        "live": NOW - RELEASED.created,
    }


def test_validation_staleness_counts_from_the_history_apply_time(exposition: str) -> None:
    staleness = value(exposition, "promotion_validation_staleness_seconds", pipeline=PIPELINE)
    assert staleness == NOW - INTEGRATION_APPLIED_AT


def test_applied_times_from_history_then_from_the_source(exposition: str) -> None:
    name = "promotion_applied_timestamp_seconds"
    assert value(exposition, name, stage="integration") == INTEGRATION_APPLIED_AT
    assert value(exposition, name, stage="live") == LIVE_SOURCE_UPDATED_AT


def test_canary_checks_by_name(exposition: str) -> None:
    healthy = {
        (s.labels["cluster"], s.labels["check"]): s.value
        for s in samples(exposition, "promotion_canary_check_healthy")
    }
    assert healthy == {
        ("integration", "kubernetes-api"): 1.0,
        ("integration", "flux-pods-healthy"): 0.0,
        ("live", "kubernetes-api"): 1.0,
        ("live", "flux-pods-healthy"): 1.0,
    }
    labels = samples(exposition, "promotion_canary_check_healthy")[0].labels
    assert (labels["namespace"], labels["canary"]) == ("monitoring", "platform-validation")
    ratio = value(
        exposition,
        "promotion_canary_check_uptime_ratio",
        cluster="integration",
        check="flux-pods-healthy",
    )
    assert ratio == pytest.approx(0.6)


def test_a_check_without_data_exports_no_series(exposition: str) -> None:
    for name in ("promotion_canary_check_healthy", "promotion_canary_check_uptime_ratio"):
        assert not [s for s in samples(exposition, name) if s.labels["check"] == "dns-resolves"]


def test_source_up(exposition: str) -> None:
    up = {
        (s.labels["kind"], s.labels["name"]): s.value
        for s in samples(exposition, "promotion_source_up")
    }
    assert up == {
        ("registry", REPOSITORY): 1.0,
        ("cluster", "integration"): 1.0,
        ("cluster", "live"): 1.0,
        ("cluster", "dev"): 0.0,
        ("github", snapshots.GITHUB_REPOSITORY): 1.0,
    }
    errors = "promotion_source_errors_total"
    assert value(exposition, errors, name="dev", reason="unreachable") == 3
    assert value(exposition, errors, name="dev", reason="timeout") == 0


def test_registry_github_and_cluster_counts(exposition: str) -> None:
    assert value(exposition, "promotion_registry_tags", pipeline=PIPELINE) == 17
    assert value(exposition, "promotion_registry_artifacts", pipeline=PIPELINE) == 4
    assert value(exposition, "promotion_registry_ignored_tags", pipeline=PIPELINE) == 1
    assert value(exposition, "promotion_helmreleases_ready", cluster="integration") == 11
    assert value(exposition, "promotion_github_rate_limit_remaining") == 4321
    runs = "promotion_workflow_recent_runs"
    assert value(exposition, runs, role="build", conclusion="failure") == 1
    assert value(exposition, runs, role="promote", conclusion="in_progress") == 1
    assert value(exposition, "promotion_commit_statuses", state="pending") == 1
    assert value(exposition, "promotion_polls_total") == 7


def test_tree_nodes_are_a_state_set(exposition: str) -> None:
    by_node: dict[tuple[str, str], dict[str, float]] = {}
    for s in samples(exposition, "promotion_tree_node_status"):
        by_node.setdefault((s.labels["tree"], s.labels["node"]), {})[s.labels["status"]] = s.value
    assert all(sorted(states.values()) == [0.0, 0.0, 1.0] for states in by_node.values())
    assert by_node[("integration", "integration_source_current")]["failing"] == 1
    assert by_node[("live", "live_source_current")]["failing"] == 1
    assert by_node[("live", "stable_tag_present")]["ok"] == 1


def test_only_version_info_carries_tags_shas_and_digests(exposition: str) -> None:
    identifying = snapshots.identifying_strings()
    version_info = samples(exposition, "promotion_version_info")
    assert any(label in identifying for s in version_info for label in s.labels.values())
    for sample in samples(exposition):
        if sample.name == "promotion_version_info":
            continue
        for label, label_value in sample.labels.items():
            leaked = {text for text in identifying if text in label_value}
            assert not leaked, f"{sample.name}{{{label}={label_value!r}}} carries {leaked}"


# --- Registry down -------------------------------------------------------------------------


def test_registry_down_keeps_deployed_versions_from_the_clusters(
    registry_down_exposition: str,
) -> None:
    found = {
        s.labels["stage"]: s.labels
        for s in samples(registry_down_exposition, "promotion_version_info")
    }
    assert set(found) == {"integration", "live"}
    assert found["integration"]["version"] == IN_INTEGRATION.rc
    assert found["integration"]["digest"] == IN_INTEGRATION.digest
    assert found["live"]["version"] == OLDEST.stable
    assert found["live"]["digest"] == OLDEST.digest
    source = value(registry_down_exposition, "promotion_source_up", kind="registry")
    assert source == 0


def test_registry_down_drops_what_needs_the_registry(registry_down_exposition: str) -> None:
    for name in (
        "promotion_lag_seconds",
        "promotion_validation_staleness_seconds",
        "promotion_registry_tags",
        "promotion_artifact_created_timestamp_seconds",
    ):
        assert samples(registry_down_exposition, name) == [], name


def test_registry_down_turns_tree_nodes_unknown_never_failing(
    registry_down_exposition: str,
) -> None:
    current: dict[tuple[str, str], str] = {
        (s.labels["tree"], s.labels["node"]): s.labels["status"]
        for s in samples(registry_down_exposition, "promotion_tree_node_status")
        if s.value == 1
    }
    # A node that reads the registry is unknown; the others (the build check reads GitHub,
    # the Ready checks their cluster) still answer.
    reads = {node.id: node.reads for tree in TREES for node in tree.nodes}
    unknown = {key for key, status in current.items() if status == "unknown"}
    assert unknown == {key for key in current if Source.REGISTRY in reads[key[1]]}
    assert "failing" not in current.values()
    assert len(current) == sum(len(tree.nodes) for tree in TREES)


# --- Delivery timestamps (the DORA rules' inputs) ----------------------------------------------


def test_commit_times_come_from_the_commits_read(exposition: str) -> None:
    name = "promotion_commit_timestamp_seconds"
    assert value(exposition, name, stage="build") == NEWEST.created - 300
    assert value(exposition, name, stage="integration") == IN_INTEGRATION.created - 300
    # Live's commit is older than the commits GitHub listed: unknown, so absent.
    assert not [s for s in samples(exposition, name) if s.labels["stage"] == "live"]


def test_integration_applied_time_of_a_later_stage_comes_from_integration_history(
    exposition: str,
) -> None:
    name = "promotion_integration_applied_timestamp_seconds"
    # RELEASED is both the newest validated and the highest stable artifact; live's OLDEST is
    # no longer in integration's history.
    found = {s.labels["stage"]: s.value for s in samples(exposition, name)}
    assert found == {"validated": RELEASED.created + 60, "release": RELEASED.created + 60}


def test_kustomization_history_is_bounded_by_entry_with_no_revision(exposition: str) -> None:
    prefix = "promotion_kustomization_history"
    first = samples(exposition, f"{prefix}_first_reconciled_timestamp_seconds")
    assert {(s.labels["stage"], s.labels["entry"]): s.value for s in first} == {
        ("integration", "0"): INTEGRATION_APPLIED_AT,
        ("integration", "1"): RELEASED.created + 60,
    }
    last = samples(exposition, f"{prefix}_last_reconciled_timestamp_seconds")
    assert {s.labels["entry"]: s.value for s in last} == {
        "0": NOW - 60,
        "1": IN_INTEGRATION.created,
    }


def test_no_rollback_and_each_stage_names_its_cluster(exposition: str) -> None:
    rolled = samples(exposition, "promotion_stage_rolled_back")
    assert {s.labels["stage"]: s.value for s in rolled} == {"integration": 0, "live": 0}
    info = samples(exposition, "promotion_stage_cluster_info")
    assert {s.labels["stage"]: s.labels["cluster"] for s in info} == {
        "integration": "integration",
        "live": "live",
    }


def _live_history(*entries: HistoryEntry) -> Snapshot:
    snapshot = snapshots.rich_snapshot()
    live = snapshot.clusters["live"]
    assert live is not None
    ref = snapshots.KUSTOMIZATION_REF
    kustomization = live.kustomizations[ref]
    assert isinstance(kustomization, KustomizationData)
    kustomizations = {ref: replace(kustomization, history=entries)}
    clusters = {**snapshot.clusters, "live": replace(live, kustomizations=kustomizations)}
    return replace(snapshot, clusters=clusters)


def test_live_back_on_an_older_build_than_its_history_shows_is_a_rollback(
    poller: Poller, config: Config
) -> None:
    succeeded = "ReconciliationSucceeded"
    released = RELEASED.flux_revision(RELEASED.stable or "")
    back = _live_history(
        HistoryEntry(snapshots.LIVE_REVISION, NOW - 600, NOW - 60, succeeded),
        HistoryEntry(released, NOW - DAY, NOW - 600, succeeded),
    )
    text = render(poller, config, back)
    assert value(text, "promotion_stage_rolled_back", stage="live") == 1
    forward = _live_history(HistoryEntry(snapshots.LIVE_REVISION, NOW - 600, NOW - 60, succeeded))
    text = render(poller, config, forward)
    assert value(text, "promotion_stage_rolled_back", stage="live") == 0
