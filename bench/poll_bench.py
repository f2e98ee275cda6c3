"""Polling cost at scale: one table for a registry of 10,000 tags. `make bench` runs it.

The fake registry, clusters and GitHub run in bench/world.py, another process, so the peak
RSS measured here is the exporter's own. The exporter side is the real thing: `Poller` with
its real clients, reading the config the world wrote. Exits 1 when a target is missed and
names it; see bench/README.md for what each row means.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from exporter.collector import PromotionCollector
from exporter.config import load_config
from exporter.model import cluster_wants
from exporter.poller import Poller

WORLD = Path(__file__).resolve().parent / "world.py"
TAGS = 10_000
GHCR_PAGE_SIZE = 100  # the built-in registry pages like GHCR
STEADY_POLLS = 5
RENDER_ITERATIONS = 400
POLLS_PER_HOUR = 120  # a 30 s interval
GITHUB_HOURLY_LIMIT = 5_000
GITHUB_BUDGET_TARGET_PERCENT = 10.0
RSS_TARGET_MB = 80.0


class World:
    """bench/world.py as a child process, spoken to one JSON line at a time."""

    def __init__(self, tags: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(WORLD), "--tags", str(tags)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = self._read_line()

    def _streams(self) -> tuple[IO[str], IO[str]]:
        assert self._process.stdin is not None and self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def _read_line(self) -> dict[str, Any]:
        line = self._streams()[1].readline()
        if not line:
            raise RuntimeError(f"bench/world.py exited with {self._process.wait()}")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        stdin, _ = self._streams()
        stdin.write(command + "\n")
        stdin.flush()
        return self._read_line()

    def close(self) -> None:
        self._streams()[0].close()  # the world stops its servers when stdin closes
        self._process.wait(timeout=30)


@dataclass
class PollResult:
    cpu: float
    wall: float
    charged: int  # GitHub requests that spent primary budget (non-304)
    requests: dict[str, Any]  # the world's account of what each server was asked
    reheads: int  # HEADs of tags an earlier poll already HEADed

    def registry(self, key: str) -> int:
        return self.requests["registry"].get(key, 0)


@dataclass
class Bench:
    poller: Poller
    world: World
    headed: set[str] = field(default_factory=set)

    def poll(self) -> PollResult:
        clients = self.poller.github_clients
        charged_before = sum(client.requests_charged for client in clients)
        cpu, wall = time.process_time(), time.perf_counter()
        state = self.poller.poll_once()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        down = [f"{s.kind} {s.name}" for s in state.sources if not s.up]
        if down:
            raise RuntimeError(f"sources down during the benchmark: {', '.join(down)}")
        requests = self.world.ask("requests")
        heads = requests["registry"].pop("head_refs")
        reheads = sum(ref in self.headed for ref in heads)
        self.headed.update(heads)
        charged = sum(client.requests_charged for client in clients) - charged_before
        return PollResult(cpu, wall, charged, requests, reheads)


def median_seconds(render: Callable[[], bytes], iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        render()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


class _Prebuilt(Collector):
    """Yields finished families: what bare prometheus_client costs for the same series."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


@dataclass(frozen=True)
class RenderResult:
    collector: float
    bare: float
    series: int

    @property
    def ratio(self) -> float:
        return self.collector / self.bare


def measure_render(poller: Poller) -> RenderResult:
    ours = CollectorRegistry(auto_describe=False)
    ours.register(PromotionCollector(poller))
    exposition = generate_latest(ours)
    families = list(text_string_to_metric_families(exposition.decode()))
    bare = CollectorRegistry(auto_describe=False)
    bare.register(_Prebuilt(families))
    if generate_latest(bare) != exposition:
        raise RuntimeError("the pre-built families do not render the collector's exposition")
    return RenderResult(
        collector=median_seconds(lambda: generate_latest(ours), RENDER_ITERATIONS),
        bare=median_seconds(lambda: generate_latest(bare), RENDER_ITERATIONS),
        series=sum(len(family.samples) for family in families),
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # Linux: KiB


@dataclass(frozen=True)
class Row:
    measure: str
    cold: str
    steady: str
    release: str
    target: str
    result: str  # PASS | FAIL | "" when the row has no target


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def cluster_minimum(poller: Poller) -> dict[str, int]:
    """Objects read per cluster: each wanted object, plus one HelmRelease list page."""
    wants = cluster_wants(poller.config)
    return {
        name: sum(len(getattr(want, kind.name)) for kind in dataclasses.fields(want)) + 1
        for name, want in wants.items()
    }


def budget_percent(charged_per_poll: float) -> float:
    """The share of GitHub's hourly budget spent if every poll of the hour cost this much."""
    return charged_per_poll * POLLS_PER_HOUR / GITHUB_HOURLY_LIMIT * 100


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


@dataclass(frozen=True)
class Polls:
    cold: PollResult
    steady: list[PollResult]
    release: PollResult

    @property
    def all(self) -> tuple[PollResult, ...]:
        return (self.cold, *self.steady, self.release)


def build_rows(
    bench: Bench, polls: Polls, render: RenderResult, rss_before_poll: float
) -> list[Row]:
    minimum = cluster_minimum(bench.poller)
    return [
        *_registry_rows(polls, math.ceil(bench.world.ready["tags"] / GHCR_PAGE_SIZE)),
        _github_requests_row(polls),
        *(_cluster_row(name, minimum[name], polls) for name in sorted(minimum)),
        _github_budget_row(polls),
        *_cost_rows(polls, render, rss_before_poll),
    ]


def _registry_rows(polls: Polls, pages: int) -> list[Row]:
    cold, release = polls.cold, polls.release
    worst = {
        key: max(poll.registry(key) for poll in polls.steady)
        for key in ("total", "manifest_get", "manifest_head")
    }
    worst_reheads = max(poll.reheads for poll in polls.steady)
    return [
        Row(
            "registry requests",
            f"{cold.registry('total'):,}",
            f"{worst['total']:,}",
            f"{release.registry('total'):,}",
            f"= {pages} tag-list pages",
            verdict(worst["total"] == pages),
        ),
        Row(
            "registry manifest GETs",
            f"{cold.registry('manifest_get'):,}",
            str(worst["manifest_get"]),
            str(release.registry("manifest_get")),
            "steady: 0",
            verdict(worst["manifest_get"] == 0),
        ),
        Row(
            "registry manifest HEADs (of tags HEADed before)",
            f"{cold.registry('manifest_head'):,} ({cold.reheads})",
            f"{worst['manifest_head']} ({worst_reheads})",
            f"{release.registry('manifest_head')} ({release.reheads})",
            "steady: 0 (0); never a re-HEAD",
            verdict(worst["manifest_head"] == 0 and max(poll.reheads for poll in polls.all) == 0),
        ),
    ]


def _github_requests_row(polls: Polls) -> Row:
    def cell(poll: PollResult) -> str:
        github = poll.requests["github"]
        return f"{github['total']} ({github['not_modified']})"

    urls = max(poll.requests["github"]["distinct_urls"] for poll in (polls.cold, *polls.steady))
    worst = max(polls.steady, key=lambda poll: poll.requests["github"]["total"])
    return Row(
        "GitHub requests (304 Not Modified)",
        cell(polls.cold),
        cell(worst),
        cell(polls.release),
        f"= {urls} distinct URLs",
        verdict(worst.requests["github"]["total"] == urls),
    )


def _cluster_row(name: str, minimum: int, polls: Polls) -> Row:
    def cell(poll: PollResult) -> str:
        counts = poll.requests["clusters"][name]
        return f"{counts['total']} ({counts.get('discovery', 0)})"

    worst = max(polls.steady, key=lambda poll: poll.requests["clusters"][name]["total"])
    return Row(
        f"cluster {name} requests (discovery)",
        cell(polls.cold),
        cell(worst),
        cell(polls.release),
        f"min {minimum} objects read",
        "",
    )


def _github_budget_row(polls: Polls) -> Row:
    cold, release = polls.cold, polls.release
    charged = statistics.mean(poll.charged for poll in polls.steady)
    budget = budget_percent(charged)
    return Row(
        "GitHub charged requests/poll (x 120/h, share of 5,000/h)",
        f"{cold.charged} ({budget_percent(cold.charged):.1f}%){_server_disagrees(cold)}",
        f"{charged:g} ({budget:.1f}%)" + "".join(map(_server_disagrees, polls.steady)),
        f"{release.charged}{_server_disagrees(release)}",
        f"steady < {GITHUB_BUDGET_TARGET_PERCENT:g}%",
        verdict(budget < GITHUB_BUDGET_TARGET_PERCENT),
    )


def _cost_rows(polls: Polls, render: RenderResult, rss_before_poll: float) -> list[Row]:
    cold, release = polls.cold, polls.release
    cpu = statistics.median(poll.cpu for poll in polls.steady)
    wall = statistics.median(poll.wall for poll in polls.steady)
    rss = peak_rss_mb()
    return [
        Row(
            "CPU per poll (wall)",
            f"{seconds(cold.cpu)} ({seconds(cold.wall)})",
            f"{seconds(cpu)} ({seconds(wall)})",
            f"{seconds(release.cpu)} ({seconds(release.wall)})",
            "",
            "",
        ),
        Row(
            "peak RSS of the exporter process",
            "",
            f"{rss:.1f} MB",
            "",
            f"< {RSS_TARGET_MB:g} MB ({rss_before_poll:.1f} MB before any poll)",
            verdict(rss < RSS_TARGET_MB),
        ),
        Row(
            f"/metrics render, {render.series} series (median of {RENDER_ITERATIONS})",
            "",
            f"{render.ratio:.2f}x bare",
            "",
            f"{render.collector * 1000:.2f} ms vs bare prometheus_client "
            f"{render.bare * 1000:.2f} ms",
            "",
        ),
    ]


def _server_disagrees(poll: PollResult) -> str:
    """A note when the fake GitHub saw a different number of charged (non-304) answers."""
    github = poll.requests["github"]
    seen = github["total"] - github["not_modified"]
    return "" if seen == poll.charged else f" [fake GitHub charged {seen}]"


def markdown(rows: list[Row]) -> str:
    header = Row("measure", "cold poll", "steady poll", "+1 release", "minimum / target", "result")
    lines = [_line(header), _line(Row(*(["---"] * 6)))]
    lines += [_line(row) for row in rows]
    return "\n".join(lines)


def _line(row: Row) -> str:
    cells = (row.measure, row.cold, row.steady, row.release, row.target, row.result)
    return "| " + " | ".join(cell or "" for cell in cells) + " |"


def run() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    started = time.perf_counter()
    world = World(TAGS)
    try:
        rss_before_poll = peak_rss_mb()
        poller = Poller(load_config(world.ready["config"]))
        try:
            bench = Bench(poller, world)
            cold = bench.poll()
            steady = [bench.poll() for _ in range(STEADY_POLLS)]
            new_tags = world.ask("release")["new_tags"]
            polls = Polls(cold, steady, bench.poll())
            rows = build_rows(bench, polls, measure_render(poller), rss_before_poll)
        finally:
            poller.close()
    finally:
        world.close()
    ready = world.ready
    print(
        f"promotion-exporter poll benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{ready['tags']:,} tags on {ready['artifacts']:,} artifacts "
        f"(seeded in {ready['seed_seconds']} s), page size {GHCR_PAGE_SIZE}; "
        f"steady = worst of {STEADY_POLLS} unchanged polls (CPU: median); "
        f"+1 release = a merge promoted end to end ({len(new_tags)} new tags)\n"
    )
    print(markdown(rows))
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")
    missed = [row.measure for row in rows if row.result == "FAIL"]
    if missed:
        print(f"TARGET MISSED: {'; '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
