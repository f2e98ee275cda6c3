"""The trees are defined once: the model, the rules, the runbook and diagnose all follow them."""

from __future__ import annotations

from pathlib import Path

import yaml

from exporter.facts import NODE_FACTS
from exporter.rules import PLAIN_RULES_FILE, RuleOptions, render_files
from exporter.simulator.scenarios import SCENARIOS
from exporter.trees import TREES, Wiring, tree_nodes

ROOT = Path(__file__).resolve().parents[1]
NODES = [(tree, index, node) for tree in TREES for index, node in enumerate(tree.nodes)]


def _rules() -> dict[str, dict]:
    groups = yaml.safe_load(render_files(RuleOptions())[PLAIN_RULES_FILE])["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_model_computes_a_fact_for_every_node_and_no_other() -> None:
    assert set(NODE_FACTS) == {node.id for _tree, _index, node in NODES}


def test_every_node_is_a_cause_alert_in_tree_order() -> None:
    rules = _rules()
    for tree, index, node in NODES:
        rule = rules[node.alert]
        assert f'tree="{tree.id}", node="{node.id}", status="failing"' in rule["expr"]
        earlier = "|".join(n.id for n in tree.nodes[:index])
        suppressed = f'node=~"{earlier}", status="ok"}}[{RuleOptions().suppression_window}]) == 0'
        assert (suppressed in rule["expr"]) == bool(earlier)
        assert rule.get("for", "0s") == node.for_
        assert rule["labels"]["severity"] == node.severity
        assert rule["annotations"]["summary"] == node.summary
        assert node.question in rule["annotations"]["description"]


def test_every_node_has_a_runbook_section_with_its_question_and_commands() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = runbook.split("\n## ")
    for _tree, _index, node in NODES:
        section = next(s for s in sections if s.startswith(f"{node.alert}\n"))
        assert node.question in section
        assert node.meaning in section
        for cause in node.causes:
            assert cause in section


def test_nodes_are_absent_without_their_wiring() -> None:
    everything = frozenset(Wiring)
    for tree in TREES:
        assert tree_nodes(tree, everything) == tree.nodes
        for missing in Wiring:
            present = tree_nodes(tree, everything - {missing})
            assert all(missing not in node.requires for node in present)
    absent = {n.id for tree in TREES for n in tree.nodes} - {
        n.id for tree in TREES for n in tree_nodes(tree, frozenset())
    }
    assert absent == {"build_succeeded", "validation_dispatched", "validation_succeeded"}


def test_the_scenarios_cover_every_alert_of_the_catalogue() -> None:
    fired = set().union(*(scenario.alerts for scenario in SCENARIOS))
    # PromotionExporterDown needs a dead exporter: tests/test_e2e.py kills one.
    # PromotionExporterStale needs a poll hung for 10m: tests/rules/health.test.yml has it, and
    # tests/faults shows a hung poll freezing its last-attempt timestamp.
    assert fired | {"PromotionExporterDown", "PromotionExporterStale"} == set(_rules())
