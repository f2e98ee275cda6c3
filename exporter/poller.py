"""Polls every source on our own timer and keeps the latest model state.

We poll on a timer rather than on each scrape: GitHub allows 5,000 requests an hour and a
registry with many tags takes many pages, so several Prometheis scraping every 15s must not
multiply that traffic.

A source whose poll fails is down at once (promotion_source_up 0), but for `grace_polls`
failed polls in a row the snapshot keeps its last good data: one dropped connection must not
turn every fact that source feeds into "unknown" and flap the alerts built on them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from exporter.config import Config, GitHubConfig
from exporter.github import GitHubClient
from exporter.kube import KubeClient
from exporter.model import State, build_state, cluster_wants
from exporter.registry import RegistryClient
from exporter.snapshot import ErrorReason, RateLimit, Snapshot, SourceError, SourceStatus

log = logging.getLogger(__name__)


def _ignoring_now(poll: Callable[[], object]) -> Callable[[float], object]:
    """A fetch for a client whose poll does not need the poll's start time."""

    def fetch(_now: float) -> object:
        return poll()

    return fetch


@dataclass
class _Source:
    kind: str
    name: str
    key: str  # the snapshot key: pipeline name, cluster name, or the GitHub repository
    fetch: Callable[[float], Any]
    close: Callable[[], None]
    # GitHub only: the pipelines this repository's data is for; fetch returns it by pipeline.
    pipelines: tuple[str, ...] = ()


@dataclass
class _History:
    """What the grace period needs to know about one source."""

    last_good: Any = None
    has_data: bool = False
    failures: int = 0  # consecutive failed polls


class Poller:
    """Owns the clients; `poll_once` polls all of them concurrently and rebuilds the state."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.errors: Counter[tuple[str, str, str]] = Counter()
        self.polls = 0
        self.state: State | None = None
        self._last_success: dict[tuple[str, str], float] = {}
        self._history: dict[tuple[str, str], _History] = {}
        self._github: list[GitHubClient] = []
        self._sources = self._make_sources()

    def _make_sources(self) -> list[_Source]:
        config, sources = self.config, []
        for pipeline in config.pipelines:
            registry = RegistryClient(pipeline, config.timeout)
            sources.append(
                _Source(
                    "registry",
                    pipeline.registry_repository,
                    pipeline.name,
                    _ignoring_now(registry.poll),
                    registry.close,
                )
            )
        wants = cluster_wants(config)
        for name, cluster in config.clusters.items():
            kube = KubeClient(cluster, config.timeout)
            sources.append(
                _Source(
                    "cluster",
                    name,
                    name,
                    _ignoring_now(partial(kube.poll, wants[name])),
                    kube.close,
                )
            )
        for repository, watches in _github_watches(config).items():
            github = GitHubClient(watches, config.timeout)
            self._github.append(github)
            sources.append(
                _Source("github", repository, repository, github.poll, github.close, tuple(watches))
            )
        return sources

    def poll_once(self) -> State:
        snapshot = self.poll_snapshot()
        self.polls += 1
        self.state = replace(
            build_state(self.config, snapshot), polls=self.polls, source_errors=dict(self.errors)
        )
        return self.state

    def poll_snapshot(self) -> Snapshot:
        """Poll every source once, concurrently, and gather what they saw."""
        now = self.clock()
        with ThreadPoolExecutor(max_workers=max(1, len(self._sources))) as pool:
            results = list(pool.map(lambda source: self._poll_source(source, now), self._sources))
        return self._snapshot(now, results)

    def _poll_source(self, source: _Source, now: float) -> tuple[_Source, Any, SourceStatus]:
        started = time.perf_counter()
        data, error = None, None
        try:
            data = source.fetch(now)
        except SourceError as failure:
            error = failure.reason
            log.warning(
                "%s %s: poll failed (%s): %s",
                source.kind,
                source.name,
                failure.reason.value,
                failure,
            )
        except Exception:
            # A client bug must not take the other sources or the exporter down with it.
            error = ErrorReason.INTERNAL
            log.exception("%s %s: unexpected error while polling", source.kind, source.name)
        duration = time.perf_counter() - started
        if error is None:
            self._last_success[(source.kind, source.name)] = now
        else:
            self.errors[(source.kind, source.name, error.value)] += 1
        data = self._within_grace(source, data, error is None)
        status = SourceStatus(
            source.kind,
            source.name,
            error is None,
            duration,
            self._last_success.get((source.kind, source.name)),
            error,
        )
        return source, data, status

    def _within_grace(self, source: _Source, data: Any, ok: bool) -> Any:
        """This poll's data, or after a failure the last good data while the grace lasts."""
        history = self._history.setdefault((source.kind, source.name), _History())
        if ok:
            history.last_good, history.has_data, history.failures = data, True, 0
            return data
        history.failures += 1
        if history.has_data and history.failures <= self.config.grace_polls:
            return history.last_good
        return None

    def _snapshot(self, now: float, results: list[tuple[_Source, Any, SourceStatus]]) -> Snapshot:
        by_kind: dict[str, dict[str, Any]] = {"registry": {}, "cluster": {}, "github": {}}
        for source, data, _status in results:
            if source.kind == "github":
                for pipeline in source.pipelines:
                    by_kind["github"][pipeline] = data.get(pipeline) if data else None
            else:
                by_kind[source.kind][source.key] = data
        return Snapshot(
            taken_at=now,
            registries=by_kind["registry"],
            clusters=by_kind["cluster"],
            github=by_kind["github"],
            sources=tuple(status for _s, _d, status in results),
            github_rate_limit=self._github_rate_limit(),
        )

    @property
    def github_clients(self) -> tuple[GitHubClient, ...]:
        """One per repository, for their request counters (the benchmark reads them)."""
        return tuple(self._github)

    def _github_rate_limit(self) -> RateLimit | None:
        """The scarcest budget seen; the repositories usually share one token and so one."""
        limits = [github.rate_limit for github in self._github if github.rate_limit is not None]
        return min(limits, key=lambda limit: limit.remaining, default=None)

    def run(self, stop: threading.Event) -> None:
        """Poll every interval until stopped; a poll's own duration is not added to the wait."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception:
                # Keep serving the last good state; a model bug must not stop the polling.
                log.exception("poll failed; keeping the previous state")
            stop.wait(max(0.0, self.config.interval - (time.monotonic() - started)))

    def close(self) -> None:
        for source in self._sources:
            source.close()


def _github_watches(config: Config) -> dict[str, dict[str, GitHubConfig]]:
    """Each repository the pipelines watch, with each pipeline's effective GitHub config."""
    watches: dict[str, dict[str, GitHubConfig]] = {}
    for pipeline in config.pipelines:
        if pipeline.github is not None:
            watches.setdefault(pipeline.github.repository, {})[pipeline.name] = pipeline.github
    return watches
