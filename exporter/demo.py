"""`promotion-exporter demo`: the simulator, the exporter, and a story told in real time.

It starts the simulated registry, clusters and GitHub, writes the config an ordinary user
would write for them, serves /metrics, then plays a healthy promotion followed by the
fluxcd/flux2#3933 failure (the Alert's dispatch silently dropped), printing `diagnose` as the
state changes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from exporter import diagnose
from exporter.config import load_config
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.simulator import distribution
from exporter.simulator.lab import Lab
from exporter.simulator.pipeline import Break, PipelineSimulator
from exporter.simulator.scenarios import HISTORY_RELEASES
from exporter.view import CLOCK_SKEW_SECONDS

log = logging.getLogger(__name__)
HISTORY_SECONDS = 86400.0


@dataclass(frozen=True)
class DemoOptions:
    listen_address: str = "127.0.0.1:9883"
    step_seconds: float = 3.0
    interval: str = "2s"
    registry: str = "auto"  # auto | builtin | distribution
    workdir: Path | None = None
    exit_when_stuck: bool = False


class _Story:
    """Plays steps on the simulator in real time and prints diagnose after each poll."""

    def __init__(self, lab: Lab, poller: Poller, options: DemoOptions, out: TextIO) -> None:
        assert lab.sim is not None
        self.sim: PipelineSimulator = lab.sim
        self.poller = poller
        self.options = options
        self.out = out

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, title: str, action: Callable[[], object]) -> None:
        self.sim.now = time.time()
        self.say(f"--- {title}")
        action()
        time.sleep(self.options.step_seconds)

    def show_diagnosis(self) -> int:
        changed_at = time.time()
        while self.poller.state is None or self.poller.state.taken_at < changed_at:
            time.sleep(0.1)
        text, code = diagnose.render(self.poller.config, self.poller.state)
        self.say(text)
        return code

    def promote_one_change(self, title: str) -> int:
        self.step(f"{title}: merge a change under kubernetes/", self.sim.merge)
        self.step("build workflow pushes X.Y.Z-rc.N, sha-<7>, integration-<7>", self.sim.build)
        self.step(
            "integration Flux selects the RC and applies it",
            lambda: self.sim.reconcile("integration"),
        )
        self.step(
            "the Alert dispatches; tag workflow adds validated-<7> and X.Y.Z", self.sim.dispatch
        )
        self.step(
            "live Flux selects the stable tag and applies it", lambda: self.sim.reconcile("live")
        )
        return self.show_diagnosis()


def _make_lab(options: DemoOptions) -> Lab:
    use_distribution = options.registry == "distribution" or (
        options.registry == "auto" and distribution.available()
    )
    return Lab(
        start=time.time() - HISTORY_SECONDS,
        use_distribution=use_distribution,
        interval=options.interval,
    )


def _prepare_history(lab: Lab) -> None:
    assert lab.sim is not None
    lab.sim.install_cluster_objects()
    for _ in range(HISTORY_RELEASES):
        lab.sim.release(step_seconds=3600)


def run(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    with _make_lab(options) as lab:
        _prepare_history(lab)
        config_path = lab.write_config(
            options.workdir / "promotion-exporter.yml" if options.workdir else None
        )
        config = load_config(config_path)
        poller = Poller(config)
        server = ExporterServer(poller, options.listen_address)
        stop = threading.Event()
        polling = threading.Thread(target=poller.run, args=(stop,), daemon=True)
        server.start()
        polling.start()
        story = _Story(lab, poller, options, out)
        registry = (
            "docker-registry"
            if isinstance(lab.registry, distribution.DistributionRegistry)
            else "built-in registry"
        )
        story.say(f"promotion-exporter demo ({registry}, Kubernetes and GitHub simulated)")
        story.say(f"  metrics: http://127.0.0.1:{server.port}/metrics")
        story.say(f"  config:  {config_path}")
        story.say(
            f"  try, in another terminal: promotion-exporter diagnose --config.file {config_path}"
        )
        try:
            return _tell(story, lab)
        except KeyboardInterrupt:
            return 0
        finally:
            stop.set()
            server.stop()
            polling.join(timeout=10)
            poller.close()


def _tell(story: _Story, lab: Lab) -> int:
    assert lab.sim is not None
    story.promote_one_change("A healthy promotion")
    # Let the healthy change's dispatch age past the clock-skew tolerance, so it cannot be
    # mistaken for a dispatch of the next change.
    time.sleep(CLOCK_SKEW_SECONDS + 1)
    story.say(
        "=== Now the Flux githubdispatch provider drops every success event "
        "(fluxcd/flux2#3933): nothing triggers validation."
    )
    lab.sim.breaks.add(Break.DISPATCH_DROPPED)
    code = story.promote_one_change("The same pipeline, silently broken")
    if story.options.exit_when_stuck:
        return code
    story.say(
        "The pipeline stays stuck: watch promotion_validation_staleness_seconds and "
        "promotion_lag_seconds grow. Ctrl-C to stop."
    )
    while True:
        time.sleep(3600)
