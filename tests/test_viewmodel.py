"""The view-model behind the page, /api/v1/state and diagnose: one shape, three renderings.

Scenarios are played in a simulated world and polled through the real clients; the JSON must
match the documented schema, survive the trip over HTTP unchanged, and make `diagnose --url`
print what `diagnose` prints next to the config.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

from exporter import __version__, diagnose
from exporter.cli import main
from exporter.config import Config
from exporter.model import State
from exporter.page import render_page
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.simulator.distribution import free_port
from exporter.simulator.lab import Lab
from exporter.simulator.scenarios import SCENARIOS_BY_NAME, play
from exporter.viewmodel import ViewError, build_view, from_json, to_json

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "state-v1.schema.json").read_text())
END = 1_793_534_400.0  # 2026-11-02T12:00:00Z
NAMES = ("healthy", "dispatch-dropped", "stable-only", "registry-down", "canary-missing")


def _observe(name: str) -> tuple[Config, State, str]:
    scenario = SCENARIOS_BY_NAME[name]
    with Lab(
        start=END - 3 * 86400, flow=scenario.flow, provider_type=scenario.provider_type
    ) as lab:
        assert lab.sim is not None
        play(lab.sim, scenario, END)
        if scenario.down:
            lab.take_down(scenario.down)
        config = lab.config()
        poller = Poller(config, clock=lab.clock)
        try:
            return config, poller.poll_once(), lab.github_token
        finally:
            poller.close()


@pytest.fixture(scope="module")
def observed() -> dict[str, tuple[Config, State, str]]:
    return {name: _observe(name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_json_matches_the_documented_schema(
    observed: dict[str, tuple[Config, State, str]], name: str
) -> None:
    config, state, _token = observed[name]
    data = json.loads(json.dumps(to_json(build_view(config, state))))
    errors = Draft202012Validator(SCHEMA).iter_errors(data)
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


@pytest.mark.parametrize("name", NAMES)
def test_json_round_trip_prints_the_same_diagnosis(
    observed: dict[str, tuple[Config, State, str]], name: str
) -> None:
    config, state, _token = observed[name]
    view = build_view(config, state)
    decoded = from_json(json.loads(json.dumps(to_json(view))))
    assert decoded == view
    assert diagnose.render_view(decoded) == diagnose.render(config, state)


def test_stuck_tree_stops_at_the_failing_node_with_filled_commands(
    observed: dict[str, tuple[Config, State, str]],
) -> None:
    config, state, _token = observed["dispatch-dropped"]
    (pipeline,) = to_json(build_view(config, state))["pipelines"]
    integration, live = pipeline["trees"]
    assert (integration["verdict"], integration["stop"]) == ("stuck", "validation_dispatched")
    assert (live["verdict"], live["stop"]) == ("healthy", None)
    stop = next(n for n in integration["nodes"] if n["id"] == "validation_dispatched")
    kubeconfig = config.clusters["integration"].kubeconfig
    assert stop["commands"][0] == (
        f"KUBECONFIG={kubeconfig} kubectl describe alert validation-success -n flux-system"
    )
    assert all("{" not in command for command in stop["commands"])
    stages = {s["stage"]: s for s in pipeline["stages"]}
    assert stages["build"]["sha"] == integration["candidate_sha"]
    assert [s for s, card in stages.items() if card["behind"]] == ["validated", "release", "live"]


def test_stable_only_flow_shows_the_unwired_nodes_as_absent(
    observed: dict[str, tuple[Config, State, str]],
) -> None:
    config, state, _token = observed["stable-only"]
    (pipeline,) = build_view(config, state).pipelines
    integration = pipeline.trees[0]
    absent = {n.id: n.detail for n in integration.nodes if n.status == "absent"}
    assert absent == {
        "validation_dispatched": "the pipeline has no Alert and Provider",
        "validation_succeeded": "the stable-only flow has no tag workflow",
    }
    assert integration.verdict == "healthy"


def test_down_registry_is_unknown_with_its_reason(
    observed: dict[str, tuple[Config, State, str]],
) -> None:
    config, state, _token = observed["registry-down"]
    (pipeline,) = build_view(config, state).pipelines
    registry = next(s for s in pipeline.sources if s.kind == "registry")
    assert (registry.up, registry.error) == (False, "unreachable")
    assert {tree.verdict for tree in pipeline.trees} == {"unknown"}
    assert {s.stage for s in pipeline.stages if s.version is None} == {
        "build",
        "validated",
        "release",
    }


def test_missing_canary_is_reported_per_cluster(
    observed: dict[str, tuple[Config, State, str]],
) -> None:
    config, state, _token = observed["canary-missing"]
    (pipeline,) = build_view(config, state).pipelines
    presence = {(c.cluster, c.canary): c.present for c in pipeline.canaries}
    assert presence == {
        ("integration", "platform-validation"): True,
        ("live", "platform-validation"): False,
    }
    assert "Canary missing" in render_page(build_view(config, state), __version__)


def test_page_escapes_every_value(observed: dict[str, tuple[Config, State, str]]) -> None:
    config, state, _token = observed["dispatch-dropped"]
    view = build_view(config, state)
    hostile = '<script>alert("x")</script>'
    (pipeline,) = view.pipelines
    tree = pipeline.trees[0]
    nodes = tuple(
        dataclasses.replace(n, detail=hostile, commands=(hostile,), causes=(hostile,))
        for n in tree.nodes
    )
    pipeline = dataclasses.replace(
        pipeline,
        name=hostile,
        artifact=hostile,
        trees=(dataclasses.replace(tree, nodes=nodes, candidate_version=hostile),),
    )
    page = render_page(dataclasses.replace(view, pipelines=(pipeline,)), hostile)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


@pytest.mark.parametrize("name", NAMES)
def test_view_holds_no_secret(observed: dict[str, tuple[Config, State, str]], name: str) -> None:
    config, state, token = observed[name]
    view = build_view(config, state)
    assert token not in json.dumps(to_json(view))
    assert token not in render_page(view, __version__)


def test_from_json_refuses_another_version_and_names_a_missing_key(
    observed: dict[str, tuple[Config, State, str]],
) -> None:
    config, state, _token = observed["healthy"]
    data = to_json(build_view(config, state))
    with pytest.raises(ViewError, match="expected api_version 'v1', got 'v2'"):
        from_json({**data, "api_version": "v2"})
    del data["pipelines"][0]["stages"][1]["lag_seconds"]
    with pytest.raises(ViewError, match=r"\$\.pipelines\[0\]\.stages\[1\]: missing 'lag_seconds'"):
        from_json(data)


# --- Over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def stuck_exporter() -> Iterator[tuple[str, Config, Poller]]:
    scenario = SCENARIOS_BY_NAME["dispatch-dropped"]
    with Lab(start=END - 3 * 86400) as lab:
        assert lab.sim is not None
        play(lab.sim, scenario, END)
        config = lab.config()
        poller = Poller(config, clock=lab.clock)
        server = ExporterServer(poller, "127.0.0.1:0")
        server.start()
        try:
            yield f"http://127.0.0.1:{server.port}", config, poller
        finally:
            server.stop()
            poller.close()


def test_state_api_waits_for_the_first_poll_then_serves_json(
    stuck_exporter: tuple[str, Config, Poller],
) -> None:
    url, _config, poller = stuck_exporter
    waiting = httpx.get(f"{url}/api/v1/state", timeout=5)
    assert waiting.status_code == 503
    assert waiting.json()["api_version"] == "v1"
    assert "Waiting for the first poll" in httpx.get(url, timeout=5).text
    poller.poll_once()
    response = httpx.get(f"{url}/api/v1/state", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert not list(Draft202012Validator(SCHEMA).iter_errors(response.json()))


def test_diagnose_url_prints_what_diagnose_prints_with_the_config(
    stuck_exporter: tuple[str, Config, Poller], capsys: pytest.CaptureFixture[str]
) -> None:
    url, config, poller = stuck_exporter
    state = poller.poll_once()
    assert main(["diagnose", "--url", url]) == diagnose.EXIT_STUCK
    text, code = diagnose.render(config, state)
    assert capsys.readouterr().out == text
    assert code == diagnose.EXIT_STUCK
    assert main(["diagnose", "--url", f"{url}/api/v1/state"]) == diagnose.EXIT_STUCK
    assert "stuck here: PromotionValidationNotDispatched" in capsys.readouterr().out


def test_diagnose_url_without_an_exporter_is_undetermined(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["diagnose", "--url", url]) == diagnose.EXIT_UNKNOWN
    assert f"{url}/api/v1/state" in capsys.readouterr().err
