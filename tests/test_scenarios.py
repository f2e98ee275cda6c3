"""Every scenario through the real clients: docker-registry and the simulator serve the wire
APIs, a Poller reads them, and the model must stop each tree at the scenario's node;
diagnose must agree."""

from __future__ import annotations

import pytest

from exporter import diagnose
from exporter.config import Config
from exporter.model import State, TreeState
from exporter.poller import Poller
from exporter.rules import RuleOptions, symptoms
from exporter.simulator.kubeapi import CANARY_CHECKER, FLUX_2_5
from exporter.simulator.lab import Lab
from exporter.simulator.scenarios import SCENARIOS, SCENARIOS_BY_NAME, Scenario, play
from exporter.trees import TREES

END = 1_793_534_400.0  # 2026-11-02T12:00:00Z
ALL_NODES = {node.id: node for tree in TREES for node in tree.nodes}
SYMPTOM_ALERTS = {symptom.alert for symptom in symptoms(RuleOptions())}


def observe(scenario: Scenario, **lab_options: object) -> tuple[Config, State]:
    """The scenario in a lab whose registry is Debian's docker-registry, a real one."""
    with Lab(start=END - 3 * 86400, use_distribution=True, **lab_options) as lab:
        play(lab.sim, scenario, END)
        config = lab.config()
        if scenario.down:
            lab.take_down(scenario.down)
        poller = Poller(config, clock=lab.clock)
        try:
            return config, poller.poll_once()
        finally:
            poller.close()


def stop_of(tree: TreeState) -> str | None:
    stop = tree.stop
    if stop is None:
        return None
    return stop.node.id if stop.ok is False else "unknown"


@pytest.fixture(scope="module", params=SCENARIOS, ids=lambda s: s.name)
def observed(request: pytest.FixtureRequest) -> tuple[Scenario, Config, State]:
    config, state = observe(request.param)
    return request.param, config, state


def test_each_tree_stops_at_the_scenarios_node(observed: tuple[Scenario, Config, State]) -> None:
    scenario, _config, state = observed
    stops = {tree.tree.id: stop_of(tree) for tree in state.pipelines[0].trees}
    assert stops == {"integration": scenario.integration_stop, "live": scenario.live_stop}


def test_diagnose_names_the_same_node_and_exit_code(
    observed: tuple[Scenario, Config, State],
) -> None:
    scenario, config, state = observed
    text, code = diagnose.render(config, state)
    failing = [
        s for s in (scenario.integration_stop, scenario.live_stop) if s not in (None, "unknown")
    ]
    for node_id in failing:
        assert f"stuck here: {ALL_NODES[node_id].alert} " in text
    assert text.count("stuck here:") == len(failing)
    unknown = "unknown" in (scenario.integration_stop, scenario.live_stop)
    expected = 1 if failing else (2 if unknown else 0)
    assert code == expected, text


def test_down_source_makes_facts_unknown_never_false(
    observed: tuple[Scenario, Config, State],
) -> None:
    scenario, _config, state = observed
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
    config, state = observe(SCENARIOS[0], flow="stable")
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
    config, state = observe(SCENARIOS_BY_NAME["build-not-triggered"])
    integration = state.pipelines[0].trees[0]
    registry_shas = {
        version.revision.rsplit(":", 1)[-1][:7] for version in state.pipelines[0].versions
    }
    assert integration.candidate_version is None
    assert integration.candidate_sha not in registry_shas
    assert f"grep {integration.candidate_sha}" in diagnose.render(config, state)[0]
