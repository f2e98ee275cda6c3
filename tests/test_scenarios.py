"""Every scenario through the real clients: docker-registry and the simulator serve the wire
APIs, a Poller reads them, and the model must stop each tree at the scenario's node;
diagnose must agree."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from functools import cmp_to_key
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import diagnose
from exporter.collector import PromotionCollector
from exporter.config import Config
from exporter.model import State, TreeState
from exporter.poller import Poller
from exporter.rules import RuleOptions, symptoms
from exporter.simulator import flux_select
from exporter.simulator.kubeapi import CANARY_CHECKER, FLUX_2_5
from exporter.simulator.lab import Lab
from exporter.simulator.pipeline import Build, PipelineSimulator
from exporter.simulator.scenarios import SCENARIOS, SCENARIOS_BY_NAME, Scenario, play
from exporter.snapshot import parse_timestamp
from exporter.trees import TREES

END = 1_793_534_400.0  # 2026-11-02T12:00:00Z
ALL_NODES = {node.id: node for tree in TREES for node in tree.nodes}
CAUSE_ALERTS = {node.alert for node in ALL_NODES.values()}
SYMPTOM_ALERTS = {symptom.alert for symptom in symptoms(RuleOptions())}


@dataclass(frozen=True)
class Truth:
    """What the simulator did, read from the simulator itself, not through the exporter."""

    builds: tuple[Build, ...]  # in build order
    tags: dict[str, str]  # tag -> manifest digest
    applied: dict[str, str | None]  # stage -> Flux revision the Kustomization applied
    applied_at: dict[str, float]  # stage -> when that revision was first reconciled


def _truth(sim: PipelineSimulator) -> Truth:
    applied_at = {}
    for name, stage in sim.stages.items():
        for entry in stage.history:
            if entry["metadata"]["revision"] == stage.applied:
                applied_at[name] = parse_timestamp(entry["firstReconciled"])
    return Truth(
        builds=tuple(copy.copy(build) for build in sim.builds),
        tags=dict(sim.tags),
        applied={name: stage.applied for name, stage in sim.stages.items()},
        applied_at=applied_at,
    )


def observe(scenario: Scenario, **lab_options: object) -> tuple[Config, State, Truth]:
    """The scenario in a lab whose registry is Debian's docker-registry, a real one."""
    options = {
        "flow": scenario.flow,
        "provider_type": scenario.provider_type,
        "neighbour": scenario.neighbour is not None,
        **lab_options,
    }
    with Lab(start=END - 3 * 86400, use_distribution=True, **options) as lab:
        play(lab.sim, scenario, END, lab.neighbour)
        config = lab.config()
        truth = _truth(lab.sim)
        if scenario.down:
            lab.take_down(scenario.down)
        poller = Poller(config, clock=lab.clock)
        try:
            return config, poller.poll_once(), truth
        finally:
            poller.close()


def stop_of(tree: TreeState) -> str | None:
    stop = tree.stop
    if stop is None:
        return None
    return stop.node.id if stop.ok is False else "unknown"


@dataclass(frozen=True)
class Observed:
    scenario: Scenario
    config: Config
    state: State
    truth: Truth


@pytest.fixture(scope="module", params=SCENARIOS, ids=lambda s: s.name)
def observed(request: pytest.FixtureRequest) -> Observed:
    return Observed(request.param, *observe(request.param))


def test_each_tree_stops_at_the_scenarios_node(observed: Observed) -> None:
    scenario, state = observed.scenario, observed.state
    stops = {tree.tree.id: stop_of(tree) for tree in state.pipelines[0].trees}
    assert stops == {"integration": scenario.integration_stop, "live": scenario.live_stop}
    assert _neighbour_causes(state) == scenario.neighbour_alerts & CAUSE_ALERTS


def _neighbour_causes(state: State) -> set[str]:
    """The cause alerts of a second pipeline's trees, if the scenario has one."""
    return {
        ALL_NODES[stop].alert
        for pipeline in state.pipelines[1:]
        for tree in pipeline.trees
        if (stop := stop_of(tree)) in ALL_NODES
    }


def test_diagnose_names_the_same_node_and_exit_code(
    observed: Observed,
) -> None:
    scenario, config, state = observed.scenario, observed.config, observed.state
    text, code = diagnose.render(config, state)
    failing = [
        s for s in (scenario.integration_stop, scenario.live_stop) if s not in (None, "unknown")
    ]
    for node_id in failing:
        assert f"stuck here: {ALL_NODES[node_id].alert} " in text
    neighbour = _neighbour_causes(state)
    assert text.count("stuck here:") == len(failing) + len(neighbour)
    unknown = "unknown" in (scenario.integration_stop, scenario.live_stop)
    expected = 1 if failing or neighbour else (2 if unknown else 0)
    assert code == expected, text


def test_down_source_makes_facts_unknown_never_false(
    observed: Observed,
) -> None:
    scenario, state = observed.scenario, observed.state
    down = [s for s in state.sources if not s.up]
    assert bool(down) == bool(scenario.down)
    if scenario.down:
        statuses = {n.status for tree in state.pipelines[0].trees for n in tree.nodes}
        assert "failing" not in statuses
        assert "unknown" in statuses


def test_scenario_table_is_consistent() -> None:
    """Each scenario's alerts are its trees' cause alerts plus symptoms only."""
    names = [scenario.name for scenario in SCENARIOS]
    assert len(names) == len(set(names))
    for scenario in SCENARIOS:
        causes = {
            ALL_NODES[s].alert
            for s in (scenario.integration_stop, scenario.live_stop)
            if s in ALL_NODES
        }
        assert causes <= scenario.alerts, scenario.name
        assert scenario.alerts - causes <= SYMPTOM_ALERTS, scenario.name
        assert scenario.inhibited <= scenario.alerts


def test_every_tree_leaf_and_failure_mode_has_a_scenario() -> None:
    stops = {s.integration_stop for s in SCENARIOS} | {s.live_stop for s in SCENARIOS}
    assert set(ALL_NODES) <= stops
    modes = {s.failure_mode for s in SCENARIOS if s.failure_mode}
    seed_rows = {
        "Build succeeds, integration does not update",
        "Validation passes, live does not update",
        "repository_dispatch not received by GHA",
        "Tag workflow fires repeatedly (~10min)",
        "Artifact push fails in build workflow",
        "Live picks up wrong version",
        'Integration shows "no matching artifact"',
    }
    assert modes == seed_rows


def test_stable_only_flow_is_healthy_without_prerelease_stage() -> None:
    """The seed's later flow: the build tags X.Y.Z and validated-<sha> directly."""
    config, state, _ = observe(SCENARIOS[0], flow="stable")
    pipeline = state.pipelines[0]
    assert all(tree.stop is None for tree in pipeline.trees), diagnose.render(config, state)[0]
    assert not any("-rc." in version.version for version in pipeline.versions)
    assert pipeline.validation_staleness == 0.0


def test_flux_2_5_cluster_without_history_is_read_through_v1beta2() -> None:
    with Lab(start=END - 3 * 86400) as lab:
        lab.clusters["live"].set_resources((*FLUX_2_5, *CANARY_CHECKER))
        lab.sim.stages["live"].legacy_flux = True
        play(lab.sim, SCENARIOS[0], END)
        fetched_at = lab.sim.stages["live"].fetched_at
        poller = Poller(lab.config(), clock=lab.clock)
        state = poller.poll_once()
        poller.close()
    pipeline = state.pipelines[0]
    assert [t.stop for t in pipeline.trees] == [None, None]
    # Without history the apply time comes from the source's artifact.lastUpdateTime.
    assert pipeline.applied["live"] == fetched_at
    assert pipeline.applied["integration"] != fetched_at


def test_diagnose_names_the_unbuilt_commit_when_the_build_never_ran() -> None:
    config, state, _ = observe(SCENARIOS_BY_NAME["build-not-triggered"])
    integration = state.pipelines[0].trees[0]
    registry_shas = {
        version.revision.rsplit(":", 1)[-1][:7] for version in state.pipelines[0].versions
    }
    assert integration.candidate_version is None
    assert integration.candidate_sha not in registry_shas
    assert f"grep {integration.candidate_sha}" in diagnose.render(config, state)[0]


def _samples(state: State) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The real exposition of the state, parsed back."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PromotionCollector(SimpleNamespace(state=state, polls=1, errors=Counter())))
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def _one(samples: dict, name: str, **labels: str) -> float | None:
    values = [v for found, v in samples.get(name, []) if labels.items() <= found.items()]
    assert len(values) <= 1, (name, labels, values)
    return values[0] if values else None


def _rank(truth: Truth, digest: str) -> flux_select.SemVer | None:
    """The highest version Flux sees on an artifact, by the simulator's own semver rules."""
    versions = [
        v for tag, d in truth.tags.items() if d == digest and (v := flux_select.parse_tag(tag))
    ]
    return max(versions, key=cmp_to_key(flux_select.compare), default=None)


def _expected_lag(truth: Truth, reached_digest: str | None, reached_tag: str) -> float:
    """Age of the oldest build the stage has not reached: it runs neither the build, nor a
    newer one, nor a version ranked higher. From the simulator's own record."""
    reached = next((b for b in truth.builds if b.digest == reached_digest), None)
    running = flux_select.parse_tag(reached_tag)

    def behind(build: Build) -> bool:
        if reached is not None and build.created <= reached.created:
            return False
        rank = _rank(truth, build.digest)
        return running is None or rank is None or flux_select.compare(running, rank) <= 0

    pending = [b for b in truth.builds if behind(b)]
    return END - min(b.created for b in pending) if pending else 0.0


def _applied_digest(truth: Truth, stage: str) -> str | None:
    revision = truth.applied[stage]
    return revision.rsplit("@", 1)[1] if revision else None


def test_contract_metrics_match_the_simulation(
    observed: Observed,
) -> None:
    scenario, state = observed.scenario, observed.state
    truth, down = observed.truth, scenario.down
    # A neighbour pipeline's own series are the scenario's trees' business, not its truth's.
    samples = {
        name: [
            (labels, v) for labels, v in found if labels.get("pipeline", "platform") == "platform"
        ]
        for name, found in _samples(state).items()
    }
    for labels, value in samples["promotion_source_up"]:
        is_down = down in (labels["kind"], labels["name"])
        assert value == (0.0 if is_down else 1.0), labels
    for stage in ("integration", "live"):
        revision = truth.applied[stage]
        info = [
            labels for labels, _v in samples["promotion_version_info"] if labels["stage"] == stage
        ]
        if down == stage or revision is None:
            assert info == []
            continue
        tag, digest = revision.rsplit("@", 1)
        assert [(i["version"], i["digest"]) for i in info] == [(tag, digest)]
        if down != "registry":
            lag = _one(samples, "promotion_lag_seconds", pipeline="platform", stage=stage)
            assert lag == _expected_lag(truth, digest, tag)
    if down == "registry":
        assert "promotion_lag_seconds" not in samples
        return
    newest = max(truth.builds, key=lambda build: build.created)
    build_info = [
        labels for labels, _v in samples["promotion_version_info"] if labels["stage"] == "build"
    ]
    assert [i["digest"] for i in build_info] == [newest.digest]
    if down != "integration":
        applied = _applied_digest(truth, "integration")
        short = next(b.short for b in truth.builds if b.digest == applied)
        # An apply is never earlier than its build: Flux 2.7 reuses history entries.
        built = next(b.created for b in truth.builds if b.digest == applied)
        applied_at = max(truth.applied_at["integration"], built)
        staleness = 0.0 if f"validated-{short}" in truth.tags else (END - applied_at)
        assert _one(samples, "promotion_validation_staleness_seconds") == staleness


def test_an_alert_in_another_namespace_is_named_as_the_cause() -> None:
    """Flux resolves an eventSource without a namespace in the Alert's own namespace."""
    config, state, _ = observe(SCENARIOS_BY_NAME["alert-event-source-namespace"])
    text = diagnose.render(config, state)[0]
    assert "the Alert does not watch Kustomization flux-system/platform" in text, text
