"""`promotion-exporter diagnose`: one poll, then a walk down both trees in a terminal."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from typing import TextIO

from exporter import seed
from exporter.config import Config, PipelineConfig
from exporter.model import PipelineState, State, TreeState
from exporter.poller import Poller
from exporter.snapshot import SourceStatus
from exporter.trees import INTEGRATION_TREE

EXIT_HEALTHY, EXIT_STUCK, EXIT_UNKNOWN = 0, 1, 2
_MARK = {True: "[ok]  ", False: "[FAIL]", None: "[??]  "}


def run(config: Config, out: TextIO = sys.stdout) -> int:
    poller = Poller(config)
    try:
        state = poller.poll_once()
    finally:
        poller.close()
    text, code = render(config, state)
    out.write(text)
    return code


def render(config: Config, state: State) -> tuple[str, int]:
    """The walk as text, and the exit code: 0 healthy, 1 stuck, 2 undetermined."""
    lines: list[str] = []
    codes = [EXIT_HEALTHY]
    for pipeline_config, pipeline in zip(config.pipelines, state.pipelines, strict=True):
        lines.extend(_pipeline_lines(config, pipeline_config, pipeline, state))
        codes.extend(_tree_code(tree) for tree in pipeline.trees)
    code = EXIT_STUCK if EXIT_STUCK in codes else max(codes)
    verdict = {EXIT_HEALTHY: "healthy", EXIT_STUCK: "stuck", EXIT_UNKNOWN: "undetermined"}
    lines.append(f"verdict: {verdict[code]}")
    return "\n".join(lines) + "\n", code


def _tree_code(tree: TreeState) -> int:
    stop = tree.stop
    if stop is None:
        return EXIT_HEALTHY
    return EXIT_STUCK if stop.ok is False else EXIT_UNKNOWN


def _pipeline_lines(
    config: Config, pipeline_config: PipelineConfig, pipeline: PipelineState, state: State
) -> Iterator[str]:
    yield f"pipeline {pipeline.name} ({pipeline_config.artifact})"
    sources = {(s.kind, s.name): s for s in state.sources}
    for kind, name in pipeline.sources:
        status = sources.get((kind, name))
        word = "up" if status and status.up else f"DOWN ({_reason(status)})"
        yield f"  source {kind} {name}: {word}"
    for version in pipeline.versions:
        yield f"  {version.stage:<12} {version.version or '-'}  {version.digest[:19]}"
    if pipeline.outranked is not None:
        yield (
            f"  note: the newest build {pipeline.outranked.build} is outranked by "
            f"{pipeline.outranked.by} (a rollback by re-tagging?): Flux selects "
            f"{pipeline.outranked.by}, which is no fault"
        )
    for tree in pipeline.trees:
        yield from _tree_lines(config, pipeline_config, tree)
    for check in state.canary_checks:
        if check.healthy is False:
            yield f"  canary {check.namespace}/{check.canary} check {check.check}: FAILING"
    yield ""


def _reason(status: SourceStatus | None) -> str:
    error = status.error if status is not None else None
    return error.value if error is not None else "not polled"


def _tree_lines(config: Config, pipeline_config: PipelineConfig, tree: TreeState) -> Iterator[str]:
    candidate = f"candidate {tree.candidate_version or '-'} (sha {tree.candidate_sha or '-'})"
    yield f"  {tree.tree.title}: {candidate}"
    stop = tree.stop
    for node in tree.nodes:
        yield f"    {_MARK[node.ok]} {node.node.question}  {node.detail}"
        if node is stop:
            break
    if stop is None:
        yield f"    healthy: {tree.tree.healthy}"
        return
    if stop.ok is None:
        yield "    stopped: a source this node needs is down; see promotion_source_up "
        yield "    (alert PromotionSourceDown). Fix the source, then run diagnose again."
        return
    placeholders = _placeholders(config, pipeline_config, tree)
    yield f"    stuck here: {stop.node.alert} ({stop.node.severity})"
    yield "    run next:"
    for command in stop.node.commands:
        yield f"      {placeholders.fill(command)}"
    yield "    likely causes:"
    for cause in stop.node.causes:
        yield f"      - {cause}"


def _placeholders(config: Config, pipeline: PipelineConfig, tree: TreeState) -> seed.Placeholders:
    """The seed's placeholders, with every name the config and the model know."""
    stage_name = INTEGRATION_TREE if tree.tree.id == INTEGRATION_TREE else "live"
    stage = pipeline.stages[stage_name]
    cluster = config.clusters[stage.cluster]
    github = pipeline.github
    known = {
        "kubeconfig": str(cluster.kubeconfig) if cluster.kubeconfig else "<in-cluster>",
        "namespace": stage.source.namespace,
        "source": stage.source.name,
        "kustomization": stage.kustomization.name,
        "artifact": pipeline.artifact,
        "sha": tree.candidate_sha,
        "version": tree.candidate_version,
        # Without dispatch wiring no node names them; never print the seed's names as if they
        # were this pipeline's.
        "alert": pipeline.alert.name if pipeline.alert else "<alert>",
        "provider": pipeline.provider.name if pipeline.provider else "<provider>",
        "build_workflow": github.build_workflow if github else None,
        "promote_workflow": github.promote_workflow if github else None,
    }
    defaults = seed.placeholders(stage_name)
    return dataclasses.replace(defaults, **{k: v for k, v in known.items() if v})
