"""Polls every source on our own timer and keeps the latest model state.

We poll on a timer rather than on each scrape: GitHub allows 5,000 requests an hour and a
registry with many tags takes many pages, so several Prometheis scraping every 15s must not
multiply that traffic.

Each source polls in its own daemon thread under a deadline, and its result is published the
moment it finishes: the state is rebuilt from the latest result of every source, so one stuck
source can never freeze the others. A source that misses its deadline is down with
reason="timeout"; while its poll still hangs, no new one starts and each round counts one more
failure, so its facts turn unknown after the grace period like any other failing source.

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
from dataclasses import dataclass, replace
from typing import Any, Protocol

from exporter.bounds import POLL_TIMEOUTS, Deadline
from exporter.config import Config, GitHubConfig
from exporter.github import GitHubClient
from exporter.kube import KubeClient
from exporter.model import State, build_state, cluster_wants
from exporter.registry import RegistryClient
from exporter.snapshot import ErrorReason, RateLimit, Snapshot, SourceError, SourceStatus

log = logging.getLogger(__name__)

# How long past its deadline a poll may run before the poller stops waiting for it: the
# clients check the deadline themselves, so this only matters for one that hangs anyway.
_DEADLINE_SLACK = 0.5
# Readiness: a source is stale when no poll of it ran to completion for this many intervals.
STALE_INTERVALS = 5


class SourceClient(Protocol):
    """What the poller needs of a client: one poll within a deadline, and closing."""

    def poll(self, deadline: Deadline) -> Any: ...

    def close(self) -> None: ...


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
    client: SourceClient
    # GitHub only: the pipelines this repository's data is for; poll returns it by pipeline.
    pipelines: tuple[str, ...] = ()


@dataclass
class _Record:
    """What the poller knows of one source: its latest result and the grace bookkeeping."""

    data: Any = None  # what the snapshot shows: this poll's data, or the last good in grace
    status: SourceStatus | None = None
    last_good: Any = None
    has_data: bool = False
    failures: int = 0  # consecutive failed polls
    last_success: float | None = None
    last_attempt: float | None = None  # start of the last poll that ran to completion
    worker: threading.Thread | None = None
    generation: int = 0  # which attempt may still publish; a late one may not


class Poller:
    """Owns the clients; `poll_once` polls all of them concurrently and rebuilds the state."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.errors: Counter[tuple[str, str, str]] = Counter()
        self.polls = 0
        self.state: State | None = None
        self.started_at = clock()
        self._lock = threading.Lock()  # guards errors, state and the records
        self._github: list[GitHubClient] = []
        self._sources = self._make_sources()
        self._records: dict[tuple[str, str], _Record] = {}

    @property
    def poll_timeout(self) -> float:
        """Each source poll's deadline, derived from the request timeout."""
        return POLL_TIMEOUTS * self.config.timeout

    def _make_sources(self) -> list[_Source]:
        config, sources = self.config, []
        for pipeline in config.pipelines:
            registry = RegistryClient(pipeline, config.timeout)
            sources.append(
                _Source("registry", pipeline.registry_repository, pipeline.name, registry)
            )
        wants = cluster_wants(config)
        for name, cluster in config.clusters.items():
            sources.append(
                _Source("cluster", name, name, KubeClient(cluster, config.timeout, wants[name]))
            )
        for repository, watches in _github_watches(config).items():
            github = GitHubClient(watches, config.timeout)
            self._github.append(github)
            sources.append(_Source("github", repository, repository, github, tuple(watches)))
        return sources

    def poll_once(self) -> State:
        """One round: every idle source polls; returns once each finished or missed its
        deadline. Each source's result was published as it came in."""
        self.poll_snapshot()
        assert self.state is not None
        return self.state

    def poll_snapshot(self) -> Snapshot:
        now = self.clock()
        started = [(s, self._start(s, now)) for s in self._sources]
        give_up = time.monotonic() + self.poll_timeout + _DEADLINE_SLACK
        for source, worker in started:
            if worker is not None:
                worker.join(max(0.0, give_up - time.monotonic()))
                if worker.is_alive():
                    self._expire(source, now, "did not finish within its deadline")
        with self._lock:
            self.polls += 1
            return self._snapshot(self.clock())

    def _record_of(self, source: _Source) -> _Record:
        return self._records.setdefault((source.kind, source.name), _Record())

    def _start(self, source: _Source, now: float) -> threading.Thread | None:
        record = self._record_of(source)
        if record.worker is not None and record.worker.is_alive():
            self._expire(source, now, "the previous poll still hangs")
            return None
        record.generation += 1
        worker = threading.Thread(
            target=self._poll_source,
            args=(source, now, record.generation),
            name=f"poll-{source.kind}-{source.name}",
            daemon=True,  # a hung request must never keep the process from exiting
        )
        record.worker = worker
        worker.start()
        return worker

    def _expire(self, source: _Source, now: float, why: str) -> None:
        """A poll past its deadline: a timeout now, whatever it returns later."""
        record = self._record_of(source)
        log.warning("%s %s: poll failed (timeout): %s", source.kind, source.name, why)
        with self._lock:
            record.generation += 1  # the hung attempt may no longer publish
            self._record(source, record, now, None, ErrorReason.TIMEOUT, self.poll_timeout)
            self._publish(source)

    def _poll_source(self, source: _Source, now: float, generation: int) -> None:
        """The body of a poll thread; it never raises, so the thread cannot die unnoticed."""
        started = time.perf_counter()
        data, error = None, None
        try:
            deadline = Deadline.after(self.poll_timeout, now)
            data = source.client.poll(deadline)
        except SourceError as failure:
            error = failure.reason
            log.warning(
                "%s %s: poll failed (%s): %s", source.kind, source.name, error.value, failure
            )
        except Exception:
            # A client bug must not take the other sources or the exporter down with it.
            error = ErrorReason.INTERNAL
            log.exception("%s %s: unexpected error while polling", source.kind, source.name)
        duration = time.perf_counter() - started
        record = self._record_of(source)
        with self._lock:
            if generation != record.generation:
                return  # already counted as a timeout
            record.last_attempt = now
            self._record(source, record, now, data, error, duration)
            self._publish(source)

    def _record(
        self,
        source: _Source,
        record: _Record,
        now: float,
        data: Any,
        error: ErrorReason | None,
        duration: float,
    ) -> None:
        if error is None:
            record.last_success = now
            record.last_good, record.has_data, record.failures = data, True, 0
            record.data = data
        else:
            self.errors[(source.kind, source.name, error.value)] += 1
            record.failures += 1
            within_grace = record.has_data and record.failures <= self.config.grace_polls
            record.data = record.last_good if within_grace else None
        for problem in getattr(data, "malformed", ()):
            # One unreadable object: its facts are unknown, the source's others still count.
            self.errors[(source.kind, source.name, ErrorReason.BAD_RESPONSE.value)] += 1
            log.warning("%s %s: %s", source.kind, source.name, problem)
        record.status = SourceStatus(
            source.kind,
            source.name,
            error is None,
            duration,
            record.last_success,
            error,
            record.last_attempt,
        )

    def _publish(self, source: _Source) -> None:
        """Rebuild the state from each source's latest result, after `source` reported.
        Called with the lock held."""
        try:
            self.state = replace(
                build_state(self.config, self._snapshot(self.clock())),
                polls=self.polls,
                source_errors=dict(self.errors),
            )
        except Exception:
            # Keep serving the last good state; a model bug must not stop the polling.
            self.errors[(source.kind, source.name, ErrorReason.INTERNAL.value)] += 1
            log.exception("rebuilding the state failed; keeping the previous state")

    def _snapshot(self, now: float) -> Snapshot:
        by_kind: dict[str, dict[str, Any]] = {"registry": {}, "cluster": {}, "github": {}}
        statuses = []
        for source in self._sources:
            record = self._record_of(source)
            if record.status is None:
                continue  # not polled yet: neither up nor down
            statuses.append(record.status)
            if source.kind == "github":
                for pipeline in source.pipelines:
                    by_kind["github"][pipeline] = record.data.get(pipeline) if record.data else None
            else:
                by_kind[source.kind][source.key] = record.data
        return Snapshot(
            taken_at=now,
            registries=by_kind["registry"],
            clusters=by_kind["cluster"],
            github=by_kind["github"],
            sources=tuple(statuses),
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

    def all_stale(self) -> bool:
        """Whether no source has run a poll to completion for STALE_INTERVALS intervals."""
        horizon = self.clock() - STALE_INTERVALS * self.config.interval
        with self._lock:
            attempts = [self._record_of(source).last_attempt for source in self._sources]
        return all((attempt or self.started_at) < horizon for attempt in attempts)

    def run(self, stop: threading.Event) -> None:
        """Poll every interval until stopped; a poll's own duration is not added to the wait."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception:
                # Nothing in a round should raise; if it does, the next round still comes.
                with self._lock:
                    for source in self._sources:
                        self.errors[(source.kind, source.name, ErrorReason.INTERNAL.value)] += 1
                log.exception("poll round failed; polling goes on")
            stop.wait(max(0.0, self.config.interval - (time.monotonic() - started)))

    def close(self) -> None:
        for source in self._sources:
            source.client.close()


def _github_watches(config: Config) -> dict[str, dict[str, GitHubConfig]]:
    """Each repository the pipelines watch, with each pipeline's effective GitHub config."""
    watches: dict[str, dict[str, GitHubConfig]] = {}
    for pipeline in config.pipelines:
        if pipeline.github is not None:
            watches.setdefault(pipeline.github.repository, {})[pipeline.name] = pipeline.github
    return watches
