"""The pipeline page at `/`: the view-model as one self-contained HTML document.

Inline CSS, no script and no external asset; a meta refresh reloads it every poll interval.
Every value is escaped. Each state is written as a word and an icon, colour only repeats it,
and the layout is one column on a phone.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from exporter.viewmodel import (
    CanaryCard,
    NodeCard,
    PipelineCard,
    SourceCard,
    StageCard,
    StateView,
    TreeCard,
)

LINKS = (
    ("/metrics", "metrics"),
    ("/api/v1/state", "state API (JSON)"),
    ("/healthz", "healthz"),
    ("/readyz", "readyz"),
)
_ICON = {"ok": "✓", "failing": "✗", "unknown": "?", "absent": "&ndash;", "behind": "⚠"}

_CSS = """
:root{--ok:#1a7f37;--bad:#c0262d;--unk:#9a6700;--dim:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;padding:1rem;font:16px/1.45 system-ui,sans-serif;color:#1f2328;background:#fff;
overflow-wrap:anywhere}
main{max-width:72rem;margin:0 auto}
h1{font-size:1.4rem;margin:0 0 .25rem}
h2{font-size:1.25rem;margin:1.5rem 0 .5rem;border-bottom:2px solid var(--line)}
h3{font-size:1.05rem;margin:1.25rem 0 .5rem}
h4{font-size:.95rem;margin:.75rem 0 .25rem}
p{margin:.25rem 0}
nav a{margin-right:1rem}
.meta,.dim{color:var(--dim);font-size:.9rem}
.state{font-weight:600;white-space:nowrap}
.ok .state,.state.ok{color:var(--ok)}
.failing .state,.state.failing,.state.down{color:var(--bad)}
.unknown .state,.state.unknown,.state.behind{color:var(--unk)}
.absent .state,.state.absent{color:var(--dim)}
.stages{list-style:none;padding:0;margin:0;display:grid;gap:.5rem;
grid-template-columns:repeat(auto-fit,minmax(11rem,1fr))}
.stage{border:1px solid var(--line);border-left:6px solid var(--ok);border-radius:6px;
padding:.5rem .75rem;background:var(--bg)}
.stage.behind{border-left-color:var(--unk)}
.stage.unknown{border-left-color:var(--dim)}
.stage .name{font-weight:700;text-transform:capitalize}
.stage .version{font-family:ui-monospace,monospace;font-size:1.05rem}
.nodes{list-style:none;padding:0;margin:0}
.node{border:1px solid var(--line);border-left:6px solid var(--ok);border-radius:6px;
margin:.35rem 0;padding:.4rem .75rem}
.node.failing{border-left-color:var(--bad);background:#fff5f5}
.node.unknown{border-left-color:var(--unk);background:#fffbea}
.node.absent{border-left-color:var(--line);color:var(--dim)}
.node.after{opacity:.7}
summary{cursor:pointer}
.seen{margin-left:1.5rem;font-size:.9rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#1f2328;color:#f6f8fa;
padding:.5rem .75rem;border-radius:6px;font-size:.85rem;margin:.3rem 0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
.verdict{font-weight:700}
.stage+.stage .name::before{content:"\\2192\\a0";color:var(--dim)}
@media (max-width:40rem){body{padding:.6rem}.seen{margin-left:0}
table,tbody,tr,td{display:block}thead{display:none}
tr{border-bottom:1px solid var(--line);padding:.3rem 0}td{border:0;padding:.05rem .25rem}
td[data-label]::before{content:attr(data-label) ": ";color:var(--dim)}td:empty{display:none}}
"""


def render_page(view: StateView | None, version: str) -> str:
    """The whole document; `view` None before the first poll."""
    refresh = max(1, math.ceil(view.interval_seconds)) if view else 5
    body = "".join(_pipelines(view)) if view else "<p>Waiting for the first poll.</p>"
    taken = (
        f"as of the poll at {_e(_iso(view.taken_at))}, refreshed every {refresh}s"
        if view
        else f"refreshed every {refresh}s"
    )
    links = " ".join(f'<a href="{href}">{_e(text)}</a>' for href, text in LINKS)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{refresh}">'
        f"<title>promotion-exporter</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>promotion-exporter {_e(version)}</h1>"
        f'<p class="meta">{taken}</p><nav>{links}</nav></header>'
        f"{body}</main></body></html>"
    )


def _pipelines(view: StateView) -> Iterator[str]:
    for pipeline in view.pipelines:
        yield (
            f'<section class="pipeline" data-pipeline="{_e(pipeline.name)}">'
            f"<h2>Pipeline {_e(pipeline.name)}</h2>"
            f'<p class="meta">{_e(pipeline.artifact)}</p>'
            f"{_stage_strip(pipeline, view.taken_at)}"
            f"{''.join(_tree(pipeline.name, tree) for tree in pipeline.trees)}"
            f"{_sources(pipeline.sources, view.taken_at)}"
            f"{_canaries(pipeline.canaries, view.taken_at)}"
            "</section>"
        )


# --- Stage strip ---------------------------------------------------------------------------


def _stage_strip(pipeline: PipelineCard, now: float) -> str:
    cards = "".join(_stage(stage, now) for stage in pipeline.stages)
    note = ""
    if pipeline.validation_staleness_seconds:
        note += (
            '<p><span class="state behind">⚠ validation stale</span> integration applied '
            f"its artifact {_duration(pipeline.validation_staleness_seconds)} ago and it is "
            "still not validated</p>"
        )
    if pipeline.outranked is not None:
        note += (
            f"<p>The newest build {_e(pipeline.outranked.build)} is outranked by "
            f"{_e(pipeline.outranked.by)}: Flux selects the higher version, which is no fault.</p>"
        )
    return (
        '<h3>Stages</h3><ol class="stages" aria-label="build, integration, validated, release, '
        f'live">{cards}</ol>{note}'
    )


def _stage(stage: StageCard, now: float) -> str:
    status, word = _stage_state(stage)
    lines = [
        f'<span class="name">{_e(stage.stage)}</span>',
        f'<span class="version">{_e(stage.version or "-")}</span>',
        f"sha {_e(stage.sha or '-')}",
    ]
    if stage.age_seconds is not None:
        lines.append(f"built {_ago(stage.built_at, now)}")
    if stage.applied_at is not None:
        lines.append(f"applied {_ago(stage.applied_at, now)}")
    lines.append(f'<span class="state {status}">{word}</span>')
    content = "".join(f"<p>{line}</p>" for line in lines)
    return f'<li class="stage {status}" data-stage="{_e(stage.stage)}">{content}</li>'


def _stage_state(stage: StageCard) -> tuple[str, str]:
    """The stage's state class and words: current, behind by its lag, or unknown."""
    if stage.lag_seconds:
        return "behind", f"&#9888; behind {_duration(stage.lag_seconds)}"
    if stage.lag_seconds == 0:
        return "ok", "&#10003; current"
    if stage.stage == "build" and stage.version is not None:
        return "ok", "&#10003; newest build"
    return "unknown", "? lag unknown" if stage.version is not None else "? unknown"


# --- Trees ---------------------------------------------------------------------------------


def _tree(pipeline: str, tree: TreeCard) -> str:
    stop = tree.stop
    verdict = {
        "healthy": f'<span class="state ok">✓ healthy</span> {_e(tree.healthy)}',
        "stuck": f'<span class="state failing">✗ stuck</span> at '
        f'<a href="#{_node_anchor(pipeline, tree, stop)}">{_e(stop.alert if stop else "")}</a>',
        "unknown": '<span class="state unknown">? undetermined</span>: a source it needs is down',
    }[tree.verdict]
    candidate = (
        f"candidate {_e(tree.candidate_version or '-')} (sha {_e(tree.candidate_sha or '-')})"
    )
    nodes = "".join(_nodes(pipeline, tree, stop))
    return (
        f'<section class="tree" data-tree="{_e(tree.id)}" data-verdict="{_e(tree.verdict)}">'
        f"<h3>{_e(tree.title)}</h3>"
        f'<p class="verdict">{verdict}</p><p class="meta">{candidate}</p>'
        f'<ol class="nodes">{nodes}</ol></section>'
    )


def _node_anchor(pipeline: str, tree: TreeCard, node: NodeCard | None) -> str:
    return _e(f"{pipeline}-{tree.id}-{node.id if node else ''}")


def _nodes(pipeline: str, tree: TreeCard, stop: NodeCard | None) -> Iterator[str]:
    after = False
    for node in tree.nodes:
        anchor = _node_anchor(pipeline, tree, node)
        yield _node(node, anchor, expanded=node is stop, after=after)
        after = after or node is stop


def _node(node: NodeCard, anchor: str, expanded: bool, after: bool) -> str:
    classes = f"node {node.status}" + (" after" if after else "")
    summary = (
        f'<summary><span class="state">{_ICON[node.status]} {_e(node.status)}</span> '
        f"{_e(node.question)}</summary>"
    )
    seen = f'<p class="seen">Seen: {_e(node.detail)}</p>' if node.detail else ""
    below = '<p class="seen dim">Below where the walk stops.</p>' if after else ""
    return (
        f'<li class="{classes}" id="{anchor}" data-node="{_e(node.id)}" '
        f'data-status="{_e(node.status)}">'
        f"<details{' open' if expanded else ''}>{summary}{seen}{below}"
        f"{_runbook(node, expanded)}</details></li>"
    )


def _runbook(node: NodeCard, stop: bool) -> str:
    if stop and node.status == "unknown":
        lead = (
            "<p>A source this node reads is down, so its answer is unknown, not no: fix the "
            "source (alert PromotionSourceDown), then look again.</p>"
        )
    elif stop:
        lead = (
            f'<p>Stuck here: alert <strong class="alert">{_e(node.alert)}</strong> '
            f"({_e(node.severity)}, fires after {_e(node.for_)}).</p>"
        )
    else:
        lead = f"<p>Alert {_e(node.alert)} ({_e(node.severity)}, for {_e(node.for_)}).</p>"
    # One block per command, so that a command wrapped on a phone still reads as one.
    commands = "".join(f"<pre><code>{_e(command)}</code></pre>" for command in node.commands)
    causes = "".join(f"<li>{_e(cause)}</li>" for cause in node.causes)
    return (
        f'<div class="runbook">{lead}<h4>Run next</h4>'
        f'<div class="commands">{commands}</div>'
        f'<h4>Likely causes</h4><ul class="causes">{causes}</ul></div>'
    )


# --- Sources and canaries ------------------------------------------------------------------


def _sources(sources: Iterable[SourceCard], now: float) -> str:
    rows = "".join(
        f'<tr data-source="{_e(s.kind)}/{_e(s.name)}">'
        f'<td data-label="kind">{_e(s.kind)}</td><td data-label="name">{_e(s.name)}</td>'
        f'<td data-label="state">{_up(s.up)}</td>'
        f'<td data-label="last success">{_ago(s.last_success, now)}</td>'
        f'<td data-label="error">{_e(s.error or "")}</td></tr>'
        for s in sources
    )
    return (
        "<h3>Sources</h3><table><thead><tr><th>kind</th><th>name</th><th>state</th>"
        f"<th>last success</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _up(up: bool) -> str:
    return '<span class="state ok">✓ up</span>' if up else '<span class="state down">✗ down</span>'


def _canaries(canaries: Iterable[CanaryCard], now: float) -> str:
    by_cluster: dict[str, list[CanaryCard]] = {}
    for canary in canaries:
        by_cluster.setdefault(canary.cluster, []).append(canary)
    if not by_cluster:
        return "<h3>Canary checks</h3><p>No Canary configured.</p>"
    parts = ["<h3>Canary checks</h3>"]
    for cluster, found in by_cluster.items():
        rows = "".join(_canary_rows(canary, now) for canary in found)
        parts.append(
            f'<h4>Cluster {_e(cluster)}</h4><table data-cluster="{_e(cluster)}"><thead><tr>'
            "<th>canary</th><th>check</th><th>state</th><th>uptime 1h</th>"
            f"<th>last run</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def _canary_rows(canary: CanaryCard, now: float) -> str:
    name = f"{_e(canary.namespace)}/{_e(canary.canary)}"
    last = _ago(canary.last_check, now)
    if canary.present is not True:
        status = "unknown" if canary.present is None else "failing"
        word = "? cluster unreadable" if canary.present is None else "✗ Canary missing"
        return (
            f'<tr><td data-label="canary">{name}</td><td></td>'
            f'<td data-label="state"><span class="state {status}">{word}</span></td>'
            f'<td></td><td data-label="last run">{last}</td></tr>'
        )
    if not canary.checks:
        return (
            f'<tr><td data-label="canary">{name}</td><td colspan="4">no check results yet</td></tr>'
        )
    rows = []
    for check in canary.checks:
        status = {True: "ok", False: "failing", None: "unknown"}[check.healthy]
        word = {"ok": "✓ passing", "failing": "✗ failing", "unknown": "? no result"}[status]
        uptime = f"{check.uptime_ratio:.0%}" if check.uptime_ratio is not None else "&ndash;"
        rows.append(
            f'<tr data-check="{_e(check.check)}" data-status="{status}">'
            f'<td data-label="canary">{name}</td><td data-label="check">{_e(check.check)}</td>'
            f'<td data-label="state"><span class="state {status}">{word}</span></td>'
            f'<td data-label="uptime 1h">{uptime}</td><td data-label="last run">{last}</td></tr>'
        )
    return "".join(rows)


# --- Words for numbers ---------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    machine = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'<time datetime="{machine}" title="{_e(_iso(timestamp))}">'
        f"{_duration(max(0.0, now - timestamp))} ago</time>"
    )


def _duration(seconds: float) -> str:
    """Two units at most: 45s, 12m, 3h 5m, 2d 4h."""
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
    ):
        if whole >= size:
            rest = (whole % size) // smaller_size
            return f"{whole // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{whole // 60}m" if whole >= 60 else f"{whole}s"
