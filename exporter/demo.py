"""`promotion-exporter demo`: the simulator, the exporter, and a story told in real time.

It starts the simulated registry, clusters and GitHub, writes the config an ordinary user
would write for them, serves the pipeline page and /metrics, then plays a healthy promotion
followed by the fluxcd/flux2#3933 failure (the Alert's dispatch silently dropped), printing
`diagnose` as the state changes. With Prometheus and Alertmanager installed it also runs both
(exporter.demo_alerting), so the stuck node becomes a firing alert that reaches Alertmanager.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from exporter import diagnose
from exporter.config import load_config
from exporter.demo_alerting import DEMO_FOR, AlertingStack, find_binaries
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.simulator import distribution
from exporter.simulator.lab import Lab
from exporter.simulator.pipeline import Break, PipelineSimulator
from exporter.simulator.scenarios import HISTORY_RELEASES
from exporter.view import CLOCK_SKEW_SECONDS

log = logging.getLogger(__name__)
HISTORY_SECONDS = 86400.0
CANARY_SECONDS = 60.0


@dataclass(frozen=True)
class DemoOptions:
    listen_address: str = "127.0.0.1:9883"
    step_seconds: float = 3.0
    interval: str = "2s"
    registry: str = "auto"  # auto | builtin | distribution
    workdir: Path | None = None
    exit_when_stuck: bool = False
    alerting: bool = True  # Prometheus and Alertmanager too, when they are installed
    prometheus_address: str = "127.0.0.1:9090"
    alertmanager_address: str = "127.0.0.1:9093"


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
        self.sim.run_canaries()
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
    _stop_on_sigterm()
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
        alerting: AlertingStack | None = None
        try:
            story.say(
                f"promotion-exporter demo ({_registry_name(lab)}, Kubernetes and GitHub simulated)"
            )
            alerting = _start_alerting(options, lab.root / "alerting", server.port, story.say)
            _print_urls(story, f"http://127.0.0.1:{server.port}", alerting, config_path)
            return _tell(story, lab, alerting)
        except KeyboardInterrupt:
            return 0
        finally:
            if alerting is not None:
                alerting.stop()
            stop.set()
            server.stop()
            polling.join(timeout=10)
            poller.close()


def _print_urls(
    story: _Story, exporter: str, alerting: AlertingStack | None, config_path: Path
) -> None:
    story.say(f"  pipeline page: {exporter}/")
    story.say(f"  metrics:       {exporter}/metrics")
    if alerting is not None:
        story.say(f"  alerts:        {alerting.prometheus_url}/alerts")
        story.say(f"  alertmanager:  {alerting.alertmanager_url}/#/alerts")
    story.say(f"  config:        {config_path}")
    story.say(f"  try, in another terminal: promotion-exporter diagnose --url {exporter}")


def _stop_on_sigterm() -> None:
    """SIGTERM ends the demo as Ctrl-C does, so that its child processes are stopped too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _registry_name(lab: Lab) -> str:
    if isinstance(lab.registry, distribution.DistributionRegistry):
        return "docker-registry"
    return "built-in registry"


def _start_alerting(
    options: DemoOptions, workdir: Path, exporter_port: int, say: Callable[[str], None]
) -> AlertingStack | None:
    """Prometheus and Alertmanager when they are installed and wanted; else says why not."""
    binaries, missing = find_binaries()
    if not options.alerting or binaries is None:
        reason = "--no-alerting" if not options.alerting else missing
        say(f"  skipped Prometheus and Alertmanager: {reason}")
        return None
    stack = AlertingStack(
        binaries,
        workdir,
        f"127.0.0.1:{exporter_port}",
        options.prometheus_address,
        options.alertmanager_address,
        say,
    )
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    say(
        f"  Prometheus evaluates the shipped rules with every for: set to {DEMO_FOR}; "
        "Alertmanager routes them as examples/alertmanager.yml to a sink that prints them."
    )
    return stack


def _tell(story: _Story, lab: Lab, alerting: AlertingStack | None) -> int:
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
    if alerting is not None:
        story.say(
            f"Watch PromotionValidationNotDispatched go pending, then firing after {DEMO_FOR}, "
            f"then reach Alertmanager: {alerting.prometheus_url}/alerts"
        )
    story.say(
        "The pipeline stays stuck: watch promotion_validation_staleness_seconds and "
        "promotion_lag_seconds grow. Ctrl-C to stop."
    )
    while True:
        # canary-checker runs every minute; the simulated one runs when told to.
        time.sleep(CANARY_SECONDS)
        lab.sim.now = time.time()
        lab.sim.run_canaries()
