"""`promotion-exporter diagnose`: a walk down both trees in a terminal.

Either one poll with the config (`run`), or the running exporter's /api/v1/state
(`run_remote`), for a person who has no kubeconfigs. Both print the same view-model.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TextIO

import httpx

from exporter.config import Config
from exporter.model import State
from exporter.poller import Poller
from exporter.viewmodel import PipelineCard, StateView, TreeCard, build_view, from_json

EXIT_HEALTHY, EXIT_STUCK, EXIT_UNKNOWN = 0, 1, 2
STATE_PATH = "/api/v1/state"
_MARK = {"ok": "[ok]  ", "failing": "[FAIL]", "unknown": "[??]  ", "absent": "[--]  "}
_EXIT = {"healthy": EXIT_HEALTHY, "stuck": EXIT_STUCK, "unknown": EXIT_UNKNOWN}


def run(config: Config, out: TextIO = sys.stdout) -> int:
    poller = Poller(config)
    try:
        state = poller.poll_once()
    finally:
        poller.close()
    text, code = render(config, state)
    out.write(text)
    return code


def run_remote(
    url: str, timeout: float, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Diagnose from a running exporter: its base URL, or the state URL itself."""
    out, err = out or sys.stdout, err or sys.stderr
    state_url = url if url.rstrip("/").endswith(STATE_PATH) else url.rstrip("/") + STATE_PATH
    try:
        response = httpx.get(state_url, timeout=timeout, headers={"Accept": "application/json"})
        response.raise_for_status()
        view = from_json(response.json())
    except (httpx.HTTPError, ValueError) as error:
        # ViewError and a body that is not JSON are both ValueErrors.
        err.write(f"diagnose: {state_url}: {error}\n")
        return EXIT_UNKNOWN
    text, code = render_view(view)
    out.write(text)
    return code


def render(config: Config, state: State) -> tuple[str, int]:
    return render_view(build_view(config, state))


def render_view(view: StateView) -> tuple[str, int]:
    """The walk as text, and the exit code: 0 healthy, 1 stuck, 2 undetermined."""
    lines: list[str] = []
    codes = [EXIT_HEALTHY]
    for pipeline in view.pipelines:
        lines.extend(_pipeline_lines(pipeline))
        codes.extend(_EXIT[tree.verdict] for tree in pipeline.trees)
    code = EXIT_STUCK if EXIT_STUCK in codes else max(codes)
    verdict = {EXIT_HEALTHY: "healthy", EXIT_STUCK: "stuck", EXIT_UNKNOWN: "undetermined"}
    lines.append(f"verdict: {verdict[code]}")
    return "\n".join(lines) + "\n", code


def _pipeline_lines(pipeline: PipelineCard) -> Iterator[str]:
    yield f"pipeline {pipeline.name} ({pipeline.artifact})"
    for source in pipeline.sources:
        word = "up" if source.up else f"DOWN ({source.error or 'not polled'})"
        yield f"  source {source.kind} {source.name}: {word}"
    for stage in pipeline.stages:
        if stage.version is not None:
            yield f"  {stage.stage:<12} {stage.version or '-'}  {(stage.digest or '')[:19]}"
    if pipeline.outranked is not None:
        yield (
            f"  note: the newest build {pipeline.outranked.build} is outranked by "
            f"{pipeline.outranked.by} (a rollback by re-tagging?): Flux selects "
            f"{pipeline.outranked.by}, which is no fault"
        )
    for tree in pipeline.trees:
        yield from _tree_lines(tree)
    for canary in pipeline.canaries:
        for check in canary.checks:
            if check.healthy is False:
                yield f"  canary {canary.namespace}/{canary.canary} check {check.check}: FAILING"
    yield ""


def _tree_lines(tree: TreeCard) -> Iterator[str]:
    candidate = f"candidate {tree.candidate_version or '-'} (sha {tree.candidate_sha or '-'})"
    yield f"  {tree.title}: {candidate}"
    stop = tree.stop
    for node in tree.nodes:
        yield f"    {_MARK[node.status]} {node.question}  {node.detail}"
        if node is stop:
            break
    if stop is None:
        yield f"    healthy: {tree.healthy}"
        return
    if stop.status == "unknown":
        yield "    stopped: a source this node needs is down; see promotion_source_up "
        yield "    (alert PromotionSourceDown). Fix the source, then run diagnose again."
        return
    yield f"    stuck here: {stop.alert} ({stop.severity})"
    yield "    run next:"
    for command in stop.commands:
        yield f"      {command}"
    yield "    likely causes:"
    for cause in stop.causes:
        yield f"      - {cause}"
