"""A week of releases in compressed time, with one bad release rolled back.

The pipeline releases twice a day. One release breaks live's canary checks; twenty minutes
later someone rolls it back by re-tagging the previous release with a higher stable version
(the seed's rollback option 3), and the checks pass again. The simulator's clock jumps from
event to event; `observe` is called at every poll time in between, so an exporter polling
through it sees the week as it would in real time. The record says what happened, for the
DORA rules to be checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.simulator.pipeline import Break, Build, PipelineSimulator

DAY = 86400.0
RELEASE_EVERY = 12 * 3600.0
RELEASES = 13
BAD_RELEASE = 6  # 0-based: the seventh release of the week breaks live
ROLLBACK_AFTER = 20 * 60.0
LEAD_IN = 3600.0  # between the first poll and the first release
STEP = 300.0  # the simulator's pauses between the pipeline's steps, as in release()


@dataclass(frozen=True)
class Deployment:
    at: float  # when the stage's Kustomization applied it
    build: Build
    rollback: bool = False


@dataclass
class WeekRecord:
    live: list[Deployment] = field(default_factory=list)
    integration: list[Deployment] = field(default_factory=list)
    committed: dict[str, float] = field(default_factory=dict)  # commit sha -> commit time
    failures: list[tuple[float, float]] = field(default_factory=list)  # live checks failing
    bad: Build | None = None


class Week:
    """Plays the week on `sim`, calling `observe` at every `poll_seconds` of its clock."""

    def __init__(
        self, sim: PipelineSimulator, observe: Callable[[], None], poll_seconds: float
    ) -> None:
        self.sim = sim
        self.observe = observe
        self.poll_seconds = poll_seconds
        self.next_poll = sim.now
        self.record = WeekRecord()

    def wait(self, seconds: float) -> None:
        """Let time pass; canary-checker runs and the exporter polls on their own clocks."""
        until = self.sim.now + seconds
        while self.next_poll <= until:
            self.sim.now = self.next_poll
            self.sim.run_canaries()
            self.observe()
            self.next_poll += self.poll_seconds
        self.sim.now = until

    def play(self, end: float) -> WeekRecord:
        self.wait(LEAD_IN)
        for release in range(RELEASES):
            started = self.sim.now
            self._release(bad=release == BAD_RELEASE)
            self.wait(started + RELEASE_EVERY - self.sim.now)
        self.wait(end - self.sim.now)
        return self.record

    def _release(self, bad: bool) -> None:
        sim = self.sim
        commit = sim.merge()
        self.record.committed[commit] = sim.now
        self.wait(STEP)
        build = sim.build()
        assert build is not None, "the week's builds do not fail"
        self.wait(STEP)
        self._reconcile("integration")
        self.wait(60)
        sim.dispatch()
        self.wait(STEP)
        if bad:
            sim.breaks.add(Break.CANARY_FAILING)
            self.record.bad = build
        self._reconcile("live")
        if bad:
            self._roll_back()

    def _roll_back(self) -> None:
        """Re-tag the previous release higher; both clusters follow; the checks pass again."""
        failed_at = self.sim.now
        self.wait(ROLLBACK_AFTER)
        good = self.sim.builds[-2]
        self.sim.retag(good, self._next_patch())
        self._reconcile("integration")
        self.wait(60)
        self._reconcile("live")
        self.sim.breaks.discard(Break.CANARY_FAILING)
        self.sim.run_canaries()
        self.record.failures.append((failed_at, self.sim.now))

    def _next_patch(self) -> str:
        stable = [tag for tag in self.sim.tags if tag.count(".") == 2 and "-" not in tag]
        major, minor, patch = max(tuple(int(part) for part in tag.split(".")) for tag in stable)
        return f"{major}.{minor}.{patch + 1}"

    def _reconcile(self, stage: str) -> None:
        before = self.sim.stages[stage].applied
        self.sim.reconcile(stage)
        applied = self.sim.stages[stage].applied
        if applied is None or applied == before:
            return
        build = next(b for b in self.sim.builds if applied.endswith(b.digest))
        deployments = getattr(self.record, stage)
        newest = max((d.build.created for d in deployments), default=float("-inf"))
        deployments.append(Deployment(self.sim.now, build, rollback=build.created < newest))
