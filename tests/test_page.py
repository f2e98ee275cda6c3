"""The pipeline page in a real browser: headless Chromium loads `/` from an exporter that
polled a simulated world, for the healthy pipeline and for the demo's stuck one.

The expected versions come from the simulator, not from the exporter. Screenshots land in
screenshots/ (ignored by git) for a person to look at; the test checks they show a page.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import Config
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.simulator.lab import Lab
from exporter.simulator.pipeline import Build, PipelineSimulator
from exporter.simulator.scenarios import SCENARIOS_BY_NAME, play
from exporter.trees import INTEGRATION, LIVE
from tests.browser import Browser, Page

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "screenshots"
WIDTHS = (1280, 390)
STABLE = re.compile(r"\d+\.\d+\.\d+")
STUCK = "dispatch-dropped"  # the demo's stuck node: flux2#3933


@dataclass
class Served:
    name: str
    url: str
    config: Config
    sim: PipelineSimulator
    secrets: tuple[str, ...]  # the GitHub token and each cluster's bearer token


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = Browser(tmp_path_factory.mktemp("chromium") / "chromium.log")
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def healthy() -> Iterator[Served]:
    yield from _serve("healthy")


@pytest.fixture(scope="module")
def stuck() -> Iterator[Served]:
    yield from _serve(STUCK)


@pytest.fixture(params=["healthy", "stuck"])
def served(request: pytest.FixtureRequest) -> Served:
    found: Served = request.getfixturevalue(request.param)
    return found


def _serve(name: str) -> Iterator[Served]:
    """The scenario played, polled once, and served on 127.0.0.1."""
    scenario = SCENARIOS_BY_NAME[name]
    end = time.time()
    with Lab(start=end - 3 * 86400) as lab:
        assert lab.sim is not None
        play(lab.sim, scenario, end)
        config = lab.config()
        poller = Poller(config, clock=lab.clock)
        poller.poll_once()
        server = ExporterServer(poller, "127.0.0.1:0")
        server.start()
        try:
            yield Served(
                scenario.name,
                f"http://127.0.0.1:{server.port}/",
                config,
                lab.sim,
                (lab.github_token, *(api.token for api in lab.clusters.values() if api.token)),
            )
        finally:
            server.stop()
            poller.close()


def _stable_of(sim: PipelineSimulator, build: Build) -> str:
    return next(t for t, d in sim.tags.items() if d == build.digest and STABLE.fullmatch(t))


def _expected_stages(served: Served) -> dict[str, tuple[str, str]]:
    """(version, short sha) of each stage, from what the simulator built and tagged."""
    sim = served.sim
    newest, previous = sim.builds[-1], sim.builds[-2]
    in_flight = (newest.version, newest.short)
    if served.name == "healthy":
        released = (_stable_of(sim, newest), newest.short)
        # Integration applied the RC tag, and Flux's revision keeps the tag it selected.
        stages = dict.fromkeys(("build", "integration", "validated", "release", "live"), released)
        return {**stages, "integration": in_flight}
    shipped = (_stable_of(sim, previous), previous.short)
    return {
        "build": in_flight,
        "integration": in_flight,
        "validated": shipped,
        "release": shipped,
        "live": shipped,
    }


def _stage_cards(page: Page) -> dict[str, str]:
    cards: dict[str, str] = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-stage]')]"
        ".map(e => [e.dataset.stage, e.innerText]))"
    )
    return cards


def _nodes(page: Page, tree: str) -> list[dict[str, object]]:
    nodes: list[dict[str, object]] = page.evaluate(
        f"[...document.querySelectorAll('[data-tree={tree}] li[data-node]')].map(e => ({{"
        "id: e.dataset.node, status: e.dataset.status, open: e.querySelector('details').open,"
        "summary: e.querySelector('summary').innerText,"
        "commands: [...e.querySelectorAll('.commands code')].map(c => c.textContent)}))"
    )
    return nodes


def test_stage_strip_shows_each_stages_version_and_sha(browser: Browser, served: Served) -> None:
    page = browser.open(served.url, 1280)
    cards = _stage_cards(page)
    assert list(cards) == ["build", "integration", "validated", "release", "live"]
    for stage, (version, sha) in _expected_stages(served).items():
        lines = cards[stage].splitlines()
        assert version in lines, (stage, cards[stage])
        assert f"sha {sha}" in lines, (stage, cards[stage])
    behind = [s for s, text in cards.items() if "behind" in text]
    assert behind == ([] if served.name == "healthy" else ["validated", "release", "live"])


def test_trees_list_every_node_in_tree_order_with_a_state_word(
    browser: Browser, served: Served
) -> None:
    page = browser.open(served.url, 1280)
    for tree in (INTEGRATION, LIVE):
        nodes = _nodes(page, tree.id)
        assert [n["id"] for n in nodes] == [node.id for node in tree.nodes]
        for node in nodes:
            # Readable without colour: the state is a word in the text, not only a hue.
            assert str(node["summary"]).split()[1] == node["status"], node


def test_healthy_page_expands_nothing(browser: Browser, healthy: Served) -> None:
    page = browser.open(healthy.url, 1280)
    for tree in (INTEGRATION, LIVE):
        nodes = _nodes(page, tree.id)
        assert {n["status"] for n in nodes} == {"ok"}
        assert not any(n["open"] for n in nodes)
    verdicts = page.evaluate("[...document.querySelectorAll('[data-tree]')].map(e => e.innerText)")
    assert all("healthy" in text for text in verdicts)


def test_stuck_page_expands_the_failing_node_with_its_commands(
    browser: Browser, stuck: Served
) -> None:
    page = browser.open(stuck.url, 1280)
    nodes = _nodes(page, INTEGRATION.id)
    opened = [n for n in nodes if n["open"]]
    assert [n["id"] for n in opened] == ["validation_dispatched"]
    (stop,) = opened
    assert stop["status"] == "failing"
    kubeconfig = stuck.config.clusters["integration"].kubeconfig
    assert stop["commands"] == [
        f"KUBECONFIG={kubeconfig} kubectl describe alert validation-success -n flux-system",
        f"KUBECONFIG={kubeconfig} kubectl get providers -n flux-system",
        f"KUBECONFIG={kubeconfig} kubectl get events -n flux-system "
        "--field-selector involvedObject.name=validation-success",
        "gh run list --workflow=tag-validated-artifact.yaml --limit=5",
    ]
    text = page.evaluate("document.querySelector('li[data-node=validation_dispatched]').innerText")
    assert "PromotionValidationNotDispatched" in text
    assert "Is the Alert firing repository_dispatch?" in text
    assert "no dispatched promote run since integration applied" in text
    assert "Likely causes" in text and "lacks repo scope" in text
    assert not any(n["open"] for n in _nodes(page, LIVE.id))


def test_sources_and_canaries_per_cluster(browser: Browser, served: Served) -> None:
    page = browser.open(served.url, 1280)
    sources = page.evaluate(
        "[...document.querySelectorAll('tr[data-source]')].map(e => e.dataset.source)"
    )
    assert sorted(sources) == sorted(
        [
            f"registry/{served.config.pipelines[0].registry_repository}",
            "cluster/integration",
            "cluster/live",
            "github/owner/homelab",
        ]
    )
    clusters = page.evaluate(
        "[...document.querySelectorAll('table[data-cluster]')].map(e => [e.dataset.cluster,"
        " [...e.querySelectorAll('tr[data-check]')].map(r => r.dataset.status)])"
    )
    assert [cluster for cluster, _ in clusters] == ["integration", "live"]
    assert all(statuses and set(statuses) == {"ok"} for _, statuses in clusters)


def test_page_holds_no_secret(browser: Browser, served: Served) -> None:
    page = browser.open(served.url, 1280)
    document = page.evaluate("document.documentElement.outerHTML")
    for secret in served.secrets:
        assert secret not in document
    assert "ghp_" not in document


def test_page_is_self_contained(browser: Browser, served: Served) -> None:
    page = browser.open(served.url, 1280)
    external = page.evaluate(
        "[...document.querySelectorAll('script, link, img, iframe, [src]')].length"
    )
    assert external == 0
    refresh = page.evaluate("document.querySelector('meta[http-equiv=refresh]').content")
    assert refresh == str(int(served.config.interval))
    links = page.evaluate("[...document.querySelectorAll('nav a')].map(a => a.pathname)")
    assert {"/metrics", "/healthz", "/readyz", "/api/v1/state"} <= set(links)


# A rendered page has text: many pixels off the background and many distinct colours.
_PIXEL_STATS = """
new Promise(resolve => {
  const image = new Image();
  image.onload = () => {
    const canvas = document.createElement('canvas');
    canvas.width = image.width; canvas.height = image.height;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    const data = context.getImageData(0, 0, image.width, image.height).data;
    let inked = 0; const colours = new Set();
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) inked++;
      if (i % 64 === 0) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    resolve({width: image.width, height: image.height, inked: inked / (data.length / 4),
             colours: colours.size});
  };
  image.src = 'data:image/png;base64,PNG_BASE64';
})
"""


def _pixel_stats(page: Page, png: bytes) -> dict[str, float]:
    result = page.call(
        "Runtime.evaluate",
        {
            "expression": _PIXEL_STATS.replace("PNG_BASE64", base64.b64encode(png).decode()),
            "awaitPromise": True,
            "returnByValue": True,
        },
    )
    stats: dict[str, float] = result["result"]["value"]
    return stats


@pytest.mark.parametrize("width", WIDTHS)
def test_screenshot_renders_without_sideways_scrolling(
    browser: Browser, served: Served, width: int
) -> None:
    page = browser.open(served.url, width)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    SCREENSHOTS.mkdir(exist_ok=True)
    png = page.screenshot(SCREENSHOTS / f"page-{served.name}-{width}.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    stats = _pixel_stats(browser.open("about:blank", width), png)
    assert stats["width"] == width
    assert stats["height"] >= 900
    assert 0.02 < stats["inked"] < 0.6, stats
    assert stats["colours"] > 20, stats
