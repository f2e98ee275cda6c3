"""One fault case against the running exporter, and the checks every case makes.

A case arms one fault on one proxy, waits until the exporter reports it, keeps it armed for
two more intervals, clears it and waits for the recovery. Throughout: the process lives,
/metrics answers in under a second, the other sources keep refreshing, no tree node turns
failing that was not failing before (no cause is invented), RSS stays within 20 MB of the
case's baseline, and no credential appears in the log or in anything served.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tests.faults.proxy import Action
from tests.faults.world import INTERVAL, FaultWorld, Scrape

POLL_DEADLINE = 3 * 1.0  # 3 x timeout
OBSERVE_SECONDS = 2 * POLL_DEADLINE + 2 * INTERVAL
HELD_INTERVALS = 2
# Two intervals, plus one for the round in which the fault was cleared and a scrape's delay.
RECOVERY_SECONDS = 3 * INTERVAL + 0.5
RSS_HEADROOM_MB = 20.0
SCRAPE_SECONDS = 1.0


@dataclass(frozen=True)
class Fault:
    path: str
    action: Action
    methods: set[str] | None = None


@dataclass(frozen=True)
class Case:
    name: str
    target: str  # which proxy: registry | github | integration | live
    faults: tuple[Fault, ...]
    reason: str | None  # the reason whose error count must grow; None: no error
    down: bool = True  # whether promotion_source_up must go to 0
    recovers: bool = True
    rss_exempt: bool = False  # documented: the work itself is the size of the fault
    # A further check, given the world, the baseline scrape and the scrape that saw the fault.
    check: Callable[[FaultWorld, Scrape, Scrape], None] | None = None
    ready_when: Callable[[Scrape, Scrape], bool] | None = None  # for reason None


@dataclass
class Row:
    case: str
    expected: str
    observed: str = ""
    errors_delta: float = 0.0
    seconds_to_report: float = 0.0
    recovery_seconds: float | None = None
    rss_baseline_mb: float = 0.0
    rss_peak_mb: float = 0.0
    slowest_scrape_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _errors(scrape: Scrape, kind: str, name: str, reason: str) -> float:
    return scrape.value("promotion_source_errors_total", kind=kind, name=name, reason=reason) or 0


def _attempts(scrape: Scrape) -> dict[tuple[str, str], float]:
    return {
        (dict(k)["kind"], dict(k)["name"]): v
        for k, v in scrape.matching("promotion_source_last_attempt_timestamp_seconds").items()
    }


def _all_up(scrape: Scrape) -> bool:
    values = scrape.matching("promotion_source_up").values()
    return len(values) == 4 and all(v == 1 for v in values)


def run(world: FaultWorld, case: Case) -> Row:
    kind, name = world.source_names[case.target]
    row = Row(case.name, f"{case.target} {'down' if case.down else 'up'}, reason={case.reason}")
    world.clear()
    baseline = world.wait_for(_all_up, 10 * INTERVAL)
    assert baseline is not None, f"{case.name}: not every source up before the fault"
    time.sleep(INTERVAL)  # a whole round with the new baseline
    baseline = world.scrape()
    row.rss_baseline_mb = row.rss_peak_mb = world.rss_mb()
    failing_before = baseline.failing_nodes()
    before = _errors(baseline, kind, name, case.reason) if case.reason else 0.0

    def reported(scrape: Scrape) -> bool:
        if case.reason is None:
            return case.ready_when is not None and case.ready_when(baseline, scrape)
        up = scrape.value("promotion_source_up", kind=kind, name=name)
        grew = _errors(scrape, kind, name, case.reason) > before
        return grew and (up == 0) == case.down

    armed = time.monotonic()
    proxy = world.proxies[case.target]
    for fault in case.faults:
        proxy.fault(fault.path, fault.action, fault.methods)
    seen = world.wait_for(reported, OBSERVE_SECONDS)
    assert seen is not None, f"{case.name}: not reported in {OBSERVE_SECONDS}s:\n{_tail(world)}"
    row.seconds_to_report = round(time.monotonic() - armed, 2)
    if case.check is not None:
        case.check(world, baseline, seen)
    _hold(world, case, row, seen, failing_before)
    final = world.scrape()
    row.errors_delta = (_errors(final, kind, name, case.reason) - before) if case.reason else 0.0
    up = final.value("promotion_source_up", kind=kind, name=name)
    if case.reason is None and not case.rss_exempt:
        assert up == 1, f"{case.name}: the source went down:\n{_tail(world)}"
    row.observed = f"up={up:g}" + (f", {case.reason} +{row.errors_delta:g}" if case.reason else "")
    world.clear()
    if case.recovers:
        row.recovery_seconds = _recovery(world, kind, name, case)
    _check_secrets(world, case)
    assert world.process.poll() is None, f"{case.name}: the exporter died:\n{_tail(world)}"
    _record(row)
    return row


def _hold(world: FaultWorld, case: Case, row: Row, seen: Scrape, failing_before: set) -> None:
    """Keep the fault for a while: every check that must hold while it lasts."""
    kind, name = world.source_names[case.target]
    attempts = _attempts(seen)
    until = time.monotonic() + HELD_INTERVALS * INTERVAL + 0.5
    scrape = seen
    while time.monotonic() < until:
        scrape = world.scrape()
        row.slowest_scrape_seconds = round(max(row.slowest_scrape_seconds, scrape.seconds), 3)
        assert scrape.seconds < SCRAPE_SECONDS, f"{case.name}: /metrics took {scrape.seconds}s"
        invented = scrape.failing_nodes() - failing_before
        assert not invented, f"{case.name}: invented causes {invented}"
        row.rss_peak_mb = max(row.rss_peak_mb, world.rss_mb())
        time.sleep(0.2)
    for source, attempt in _attempts(scrape).items():
        if source != (kind, name):
            assert attempt > attempts[source], f"{case.name}: {source} stopped refreshing"
    if not case.rss_exempt:
        grown = row.rss_peak_mb - row.rss_baseline_mb
        assert grown <= RSS_HEADROOM_MB, f"{case.name}: RSS grew {grown:.1f} MB"


def _recovery(world: FaultWorld, kind: str, name: str, case: Case) -> float:
    cleared_at, started = time.time(), time.monotonic()

    def healed(scrape: Scrape) -> bool:
        up = scrape.value("promotion_source_up", kind=kind, name=name)
        last = scrape.value("promotion_source_last_success_timestamp_seconds", kind=kind, name=name)
        return up == 1 and (last or 0) >= cleared_at - INTERVAL

    healed_scrape = world.wait_for(healed, 4 * RECOVERY_SECONDS)
    seconds = round(time.monotonic() - started, 2)
    assert healed_scrape is not None, f"{case.name}: no recovery:\n{_tail(world)}"
    assert seconds <= RECOVERY_SECONDS, f"{case.name}: recovered after {seconds}s"
    return seconds


def _check_secrets(world: FaultWorld, case: Case) -> None:
    served, log = world.pages(), world.log()
    for secret in world.secrets:
        assert secret not in log, f"{case.name}: a credential is in the log"
        assert secret not in served, f"{case.name}: a credential is served"
    assert "Traceback" not in log, f"{case.name}: a traceback in the log:\n{_tail(world)}"


def _tail(world: FaultWorld) -> str:
    return world.log()[-3000:]


def _record(row: Row) -> None:
    """FAULT_MATRIX_OUT=path appends each row as JSON, for the matrix in the closing note."""
    out = os.environ.get("FAULT_MATRIX_OUT")
    if out:
        with open(out, "a") as file:
            file.write(json.dumps(asdict(row)) + "\n")
