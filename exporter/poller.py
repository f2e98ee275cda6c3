"""Polls every source on our own timer and keeps the latest model state.

We poll on a timer rather than on each scrape: GitHub allows 5,000 requests an hour and a
registry with many tags takes many pages, so several Prometheis scraping every 15s must not
multiply that traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from exporter.config import Config
from exporter.github import GitHubClient
from exporter.kube import KubeClient
from exporter.model import State, build_state, cluster_wants
from exporter.registry import RegistryClient
from exporter.snapshot import ErrorReason, Snapshot, SourceError, SourceStatus

log = logging.getLogger(__name__)


@dataclass
class _Source:
    kind: str
    name: str
    key: str  # the snapshot key: pipeline name, cluster name, or "github"
    fetch: Callable[[float], Any]
    close: Callable[[], None]


class Poller:
    """Owns the clients; `poll_once` polls all of them concurrently and rebuilds the state."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.errors: Counter[tuple[str, str, str]] = Counter()
        self.polls = 0
        self.state: State | None = None
        self._last_success: dict[tuple[str, str], float] = {}
        self._github: GitHubClient | None = None
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
                    lambda _now, r=registry: r.poll(),
                    registry.close,
                )
            )
        wants = cluster_wants(config)
        for name, cluster in config.clusters.items():
            kube = KubeClient(cluster, config.timeout)
            sources.append(
                _Source(
                    "cluster", name, name, lambda _now, k=kube, w=wants[name]: k.poll(w), kube.close
                )
            )
        if config.github is not None:
            self._github = GitHubClient(config.github, config.timeout)
            sources.append(
                _Source(
                    "github",
                    config.github.repository,
                    "github",
                    self._github.poll,
                    self._github.close,
                )
            )
        return sources

    @property
    def github(self) -> GitHubClient | None:
        """The GitHub client, for its request counters; None without a github section."""
        return self._github

    def poll_once(self) -> State:
        now = self.clock()
        with ThreadPoolExecutor(max_workers=max(1, len(self._sources))) as pool:
            results = list(pool.map(lambda source: self._poll_source(source, now), self._sources))
        snapshot = self._snapshot(now, results)
        self.state = build_state(self.config, snapshot)
        self.polls += 1
        return self.state

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
            error = ErrorReason.BAD_RESPONSE
            log.exception("%s %s: unexpected error while polling", source.kind, source.name)
        duration = time.perf_counter() - started
        if error is None:
            self._last_success[(source.kind, source.name)] = now
        else:
            self.errors[(source.kind, source.name, error.value)] += 1
        status = SourceStatus(
            source.kind,
            source.name,
            error is None,
            duration,
            self._last_success.get((source.kind, source.name)),
            error,
        )
        return source, data, status

    def _snapshot(self, now: float, results: list[tuple[_Source, Any, SourceStatus]]) -> Snapshot:
        by_kind: dict[str, dict[str, Any]] = {"registry": {}, "cluster": {}, "github": {}}
        for source, data, _status in results:
            by_kind[source.kind][source.key] = data
        return Snapshot(
            taken_at=now,
            registries=by_kind["registry"],
            clusters=by_kind["cluster"],
            github=by_kind["github"].get("github"),
            sources=tuple(status for _s, _d, status in results),
            github_rate_limit=self._github.rate_limit if self._github else None,
        )

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
