"""A source blip through the whole chain, one poll a minute: the simulator's servers, the real
clients and Poller, the exporter's real /metrics, then the shipped rules with their real
`for:` durations in promtool. A blip within the grace period must not restart the `for:` of
the alert the tree stops at; an outage longer than the grace period must.

The exporter's clock stands still at the scenario's end while promtool's runs from zero, so
rules that compare timestamps with time() are out of this test's reach; it counts the alerts
that carry the pipeline's label, which the tree and symptom rules do.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter import rules
from exporter.config import parse_config
from exporter.poller import Poller
from exporter.server import ExporterServer
from exporter.simulator.lab import Lab
from exporter.simulator.scenarios import SCENARIOS_BY_NAME, play
from tests.processes import binary

END = 1_793_534_400.0  # 2026-11-02T12:00:00Z
MINUTES = 20
SCENARIO = SCENARIOS_BY_NAME["dispatch-dropped"]  # fluxcd/flux2#3933: for: 15m
LABELS = {"job": "promotion-exporter", "instance": "promotion-exporter:9883"}


def _expositions(outage: range, grace_polls: int) -> list[str]:
    """One /metrics body a minute, with the integration cluster answering 503 in `outage`."""
    with Lab(start=END - 3 * 86400) as lab:
        play(lab.sim, SCENARIO, END)
        config = parse_config(lab.config_dict() | {"grace_polls": grace_polls})
        poller = Poller(config, clock=lab.clock)
        server = ExporterServer(poller, "127.0.0.1:0")
        server.start()
        bodies = []
        try:
            for minute in range(MINUTES):
                lab.clusters["integration"].fail_with(503 if minute in outage else None)
                poller.poll_once()
                bodies.append(httpx.get(f"http://127.0.0.1:{server.port}/metrics").text)
        finally:
            server.stop()
            poller.close()
    return bodies


def _input_series(bodies: list[str]) -> list[dict[str, str]]:
    """Each sample as a promtool series, one value a minute; `_` where a poll lacked it."""
    values: dict[str, list[str]] = defaultdict(lambda: ["_"] * len(bodies))
    for minute, body in enumerate(bodies):
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                labels = sample.labels | LABELS
                text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                values[f"{sample.name}{{{text}}}"][minute] = repr(float(sample.value))
    return [{"series": name, "values": " ".join(v)} for name, v in values.items()]


def _firing_at(tmp_path: Path, bodies: list[str], minute: int) -> str:
    """promtool's verdict on which pipeline alerts fire at `minute`: '' when it agrees that
    exactly PromotionValidationNotDispatched does, else its complaint."""
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(rules.render_files(rules.RuleOptions())[rules.PLAIN_RULES_FILE])
    test = {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": _input_series(bodies),
                "promql_expr_test": [
                    {
                        "expr": 'count by (alertname) (ALERTS{alertstate="firing",pipeline!=""})',
                        "eval_time": f"{minute}m",
                        "exp_samples": [
                            {
                                "labels": '{alertname="PromotionValidationNotDispatched"}',
                                "value": 1,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "blip.test.yml"
    test_file.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run(
        [binary("promtool"), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


@pytest.mark.parametrize(
    ("outage", "fires"),
    [
        (range(0), True),  # the control: no blip at all
        (range(5, 6), True),  # one failed poll: the grace period keeps the last good data
        (range(5, 8), True),  # three failed polls: still within grace_polls 3
        (range(5, 10), False),  # five: unknown for two polls, so the for: starts again
    ],
    ids=["no-blip", "one-poll", "three-polls", "past-grace"],
)
def test_a_blip_within_the_grace_period_keeps_the_for(
    tmp_path: Path, outage: range, fires: bool
) -> None:
    bodies = _expositions(outage, grace_polls=3)
    complaint = _firing_at(tmp_path, bodies, minute=MINUTES - 1)
    assert (complaint == "") == fires, complaint
