"""The DORA recording rules: lead time, deployment frequency, change failure rate, time to restore.

Two groups. promotion-dora-events runs every 5m and reads only the exporter's own series: the
live failure state, and one sample per event (a deployment's lead time, the start of a
failure, a deployment's verdict once its failure window has passed). Reading raw series only,
it can be backfilled over history with `promtool tsdb create-blocks-from rules`.
promotion-dora sums and averages those samples over days with plain range functions, so it
needs no subquery and stays cheap. A deployment is an evaluation at which the stage's
applied timestamp differs from the one an interval before. docs/dora.md defines each rule
against DORA's own definitions and says where ours differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.config import parse_duration

EVENTS_INTERVAL_SECONDS = 300  # also the resolution: two deployments within it count as one
EVENTS_GROUP = "promotion-dora-events"
SUMMARY_GROUP = "promotion-dora"
LIVE_FAILURE_NODES = ("live_applied", "live_helm_releases_ready")
_WINDOWS = (("7d", 7), ("30d", 30))


def promql_duration(seconds: float) -> str:
    """Seconds as a PromQL duration in the largest units that divide it: 3900 -> 1h5m."""
    remaining = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


_INTERVAL = promql_duration(EVENTS_INTERVAL_SECONDS)


def _offset(seconds: float) -> str:
    return f" offset {promql_duration(seconds)}" if seconds else ""


def _applied(stage: str, seconds_ago: float = 0) -> str:
    selector = f'promotion_applied_timestamp_seconds{{stage="{stage}"}}'
    return f"max by (pipeline) ({selector}{_offset(seconds_ago)})"


def deployed(stage: str, seconds_ago: float = 0) -> str:
    """Non-empty when the stage's applied timestamp changed in the interval that ended
    `seconds_ago`: once per deployment, a rollback included."""
    before = _applied(stage, seconds_ago + EVENTS_INTERVAL_SECONDS)
    return f"{_applied(stage, seconds_ago)}\n!= on (pipeline)\n{before}"


def rolled_back(stage: str, seconds_ago: float = 0, window: str | None = None) -> str:
    selector = f'promotion_stage_rolled_back{{stage="{stage}"}}'
    if window:
        return f"max by (pipeline) (max_over_time({selector}[{window}]))"
    return f"max by (pipeline) ({selector}{_offset(seconds_ago)})"


def live_failing(seconds_ago: float = 0, window: str | None = None) -> str:
    """1 while a live check fails (a canary check in the live cluster, or the live tree's
    reconcile or HelmRelease node), else 0; with a window, whether one failed in it."""
    nodes = "|".join(LIVE_FAILURE_NODES)
    node = f'promotion_tree_node_status{{tree="live", node=~"{nodes}", status="failing"}}'
    canary = "promotion_canary_check_healthy"
    if window:
        node, canary = f"max_over_time({node}[{window}])", f"min_over_time({canary}[{window}])"
    else:
        node, canary = node + _offset(seconds_ago), canary + _offset(seconds_ago)
    # Pipelines may share a live cluster, so the stage info is the "many" side of the join.
    live = f'promotion_stage_cluster_info{{stage="live"}}{_offset(seconds_ago)}'
    return (
        "max by (pipeline) (\n"
        f"  {node}\n"
        "  or\n"
        f"  1 - {live}\n"
        "  * on (job, instance, cluster) group_left ()\n"
        f"  min by (job, instance, cluster) ({canary})\n"
        ")"
    )


def _degraded(seconds_ago: float = 0, window: str | None = None) -> str:
    """A live check failing, or live rolled back (a pin or an older build)."""
    failing = live_failing(seconds_ago, window)
    back = rolled_back("live", seconds_ago, window)
    return (
        "max by (pipeline) (\n"
        f'  label_replace({failing}, "signal", "failing", "", "")\n'
        "  or\n"
        f'  label_replace({back}, "signal", "rollback", "", "")\n'
        ")"
    )


@dataclass(frozen=True)
class Hop:
    name: str
    stage: str  # the stage whose deployments end the hop
    expr: str


HOPS = (
    Hop(
        "commit_to_integration",
        "integration",
        'promotion_applied_timestamp_seconds{stage="integration"}\n'
        '- promotion_commit_timestamp_seconds{stage="integration"}',
    ),
    Hop(
        "commit_to_live",
        "live",
        'promotion_applied_timestamp_seconds{stage="live"}\n'
        '- promotion_commit_timestamp_seconds{stage="live"}',
    ),
    Hop(
        "integration_to_live",
        "live",
        'promotion_applied_timestamp_seconds{stage="live"}\n'
        '- promotion_integration_applied_timestamp_seconds{stage="live"}',
    ),
)


def _lead_time(hop: Hop) -> str:
    return f"max by (pipeline) (\n{hop.expr}\n)"


def _lead_time_at_deployment(hop: Hop) -> str:
    """One sample per deployment; a rollback (a change undone, not delivered) has none."""
    return (
        f"{_lead_time(hop)}\n"
        f"and on (pipeline) (\n{deployed(hop.stage)}\n)\n"
        f"unless on (pipeline) ({rolled_back(hop.stage)} == 1)"
    )


def _failure_started() -> str:
    return f"{live_failing()}\n> bool on (pipeline)\n{live_failing(EVENTS_INTERVAL_SECONDS)}"


def _change_verdict(failure_window: str) -> str:
    """For the live deployment made `failure_window` ago, once: 1 when a failure or a rollback
    followed it within the window, 0 when none did, or when it was a remedy itself (made while
    live was failing or rolled back, or a rollback): a remedy is not a change that failed."""
    ago = parse_duration(failure_window)
    failed = (
        f"(\n{deployed('live', ago)}\n)\n"
        f"and on (pipeline) (\n{_degraded(ago + EVENTS_INTERVAL_SECONDS)}\n== 0)\n"
        f"and on (pipeline) ({rolled_back('live', ago)} == 0)\n"
        f"and on (pipeline) (\n{_degraded(window=failure_window)}\n== 1)"
    )
    return f"(\n{failed}\n) * 0 + 1\nor on (pipeline)\n(\n{deployed('live', ago)}\n) * 0"


def _record(name: str, expr: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = labels
    return rule


def events_group(failure_window: str) -> dict[str, Any]:
    """The 5m event series; `failure_window` is how long after a live deployment a failure
    or a rollback still counts against it."""
    rules = [
        _record("pipeline:promotion_live_failing:max", live_failing()),
        _record("pipeline:promotion_live_failure_started:bool", _failure_started()),
        *(
            _record(
                "pipeline_hop:promotion_lead_time_seconds:last", _lead_time(hop), {"hop": hop.name}
            )
            for hop in HOPS
        ),
        *(
            _record(
                "pipeline_hop:promotion_lead_time_seconds:deployment",
                _lead_time_at_deployment(hop),
                {"hop": hop.name},
            )
            for hop in HOPS
        ),
        _record("pipeline:promotion_live_change_failed:bool", _change_verdict(failure_window)),
    ]
    return {"name": EVENTS_GROUP, "interval": _INTERVAL, "rules": rules}


def summary_group() -> dict[str, Any]:
    applied = 'promotion_applied_timestamp_seconds{stage=~"integration|live"}'
    rules = [
        _record(
            "pipeline_hop:promotion_lead_time_seconds:mean_7d",
            "avg_over_time(pipeline_hop:promotion_lead_time_seconds:deployment[7d])",
        ),
        *(
            _record(
                f"pipeline_stage:promotion_deployments_per_day:{window}",
                f"max by (pipeline, stage) (changes({applied}[{window}])) / {days}",
            )
            for window, days in _WINDOWS
        ),
        *(
            _record(
                f"pipeline:promotion_change_failure_ratio:{window}",
                f"avg_over_time(pipeline:promotion_live_change_failed:bool[{window}])",
            )
            for window, _days in _WINDOWS
        ),
        _record(
            "pipeline:promotion_time_to_restore_seconds:mean_7d",
            f"sum_over_time(pipeline:promotion_live_failing:max[7d]) * {EVENTS_INTERVAL_SECONDS}\n"
            "/ on (pipeline)\n"
            "(sum_over_time(pipeline:promotion_live_failure_started:bool[7d]) > 0)",
        ),
    ]
    return {"name": SUMMARY_GROUP, "rules": rules}


def dora_groups(failure_window: str) -> list[dict[str, Any]]:
    return [events_group(failure_window), summary_group()]
