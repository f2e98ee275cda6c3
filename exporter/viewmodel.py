"""One view of the pipeline for people and scripts: the page, /api/v1/state and `diagnose`.

Built from the same State that /metrics exports, with the config's names filled into the
runbook commands. It holds no secret: only names, versions, digests, times and the words the
model wrote. `to_json` and `from_json` carry it over HTTP, so `diagnose --url` prints exactly
what `diagnose` prints next to the config.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from typing import Any, Union, get_args, get_origin, get_type_hints

from exporter import __version__, seed
from exporter.config import Config, PipelineConfig
from exporter.model import STAGES, PipelineState, State, TreeState
from exporter.snapshot import SourceStatus
from exporter.trees import INTEGRATION_TREE, TREES, Node, Tree, Wiring
from exporter.view import wiring

API_VERSION = "v1"
# Words for the wiring a node needs, shown when the pipeline lacks it.
_NOT_WIRED = {
    Wiring.GITHUB: "the pipeline has no github section",
    Wiring.PROMOTE_WORKFLOW: "the stable-only flow has no tag workflow",
    Wiring.DISPATCH: "the pipeline has no Alert and Provider",
}


@dataclass(frozen=True)
class StageCard:
    stage: str  # build | integration | validated | release | live
    version: str | None  # None: unknown or nothing there yet
    sha: str | None
    digest: str | None
    built_at: float | None
    age_seconds: float | None  # since the artifact at this stage was built
    applied_at: float | None  # integration and live: when the cluster applied it
    lag_seconds: float | None  # age of the oldest build not here yet; 0 when current
    prerelease: bool | None

    @property
    def behind(self) -> bool:
        return bool(self.lag_seconds)


@dataclass(frozen=True)
class NodeCard:
    id: str
    alert: str
    question: str
    severity: str
    for_: str
    status: str  # ok | failing | unknown | absent
    detail: str  # what was seen, or why the node is absent
    commands: tuple[str, ...]  # the runbook's, filled in from the config
    causes: tuple[str, ...]


@dataclass(frozen=True)
class TreeCard:
    id: str
    title: str
    healthy: str  # what it means when every node passes
    candidate_version: str | None
    candidate_sha: str | None
    nodes: tuple[NodeCard, ...]  # every node of the tree, in tree order

    @property
    def stop(self) -> NodeCard | None:
        """Where the walk stops: the first node that is neither ok nor absent."""
        return next((n for n in self.nodes if n.status in ("failing", "unknown")), None)

    @property
    def verdict(self) -> str:
        stop = self.stop
        if stop is None:
            return "healthy"
        return "stuck" if stop.status == "failing" else "unknown"


@dataclass(frozen=True)
class SourceCard:
    kind: str  # registry | cluster | github
    name: str
    up: bool
    last_success: float | None
    error: str | None  # an ErrorReason value while down
    duration_seconds: float | None


@dataclass(frozen=True)
class CheckCard:
    check: str
    healthy: bool | None
    uptime_ratio: float | None


@dataclass(frozen=True)
class CanaryCard:
    cluster: str
    namespace: str
    canary: str
    present: bool | None  # None while the cluster cannot be read
    last_check: float | None
    checks: tuple[CheckCard, ...]


@dataclass(frozen=True)
class Outrank:
    build: str
    by: str


@dataclass(frozen=True)
class PipelineCard:
    name: str
    artifact: str
    stages: tuple[StageCard, ...]  # always the five, in order
    validation_staleness_seconds: float | None
    outranked: Outrank | None
    trees: tuple[TreeCard, ...]
    sources: tuple[SourceCard, ...]
    canaries: tuple[CanaryCard, ...]


@dataclass(frozen=True)
class StateView:
    api_version: str
    exporter_version: str
    taken_at: float
    interval_seconds: float
    pipelines: tuple[PipelineCard, ...]


def build_view(config: Config, state: State) -> StateView:
    """The view of `state`; matched to the config by pipeline name, since a reload may swap
    the config a moment before the next poll rebuilds the state."""
    configs = {pipeline.name: pipeline for pipeline in config.pipelines}
    return StateView(
        api_version=API_VERSION,
        exporter_version=__version__,
        taken_at=state.taken_at,
        interval_seconds=config.interval,
        pipelines=tuple(
            _pipeline_card(config, configs[pipeline.name], pipeline, state)
            for pipeline in state.pipelines
            if pipeline.name in configs
        ),
    )


def _pipeline_card(
    config: Config, pipeline_config: PipelineConfig, pipeline: PipelineState, state: State
) -> PipelineCard:
    outranked = pipeline.outranked
    return PipelineCard(
        name=pipeline.name,
        artifact=pipeline_config.artifact,
        stages=tuple(_stage_card(pipeline, stage, state.taken_at) for stage in STAGES),
        validation_staleness_seconds=pipeline.validation_staleness,
        outranked=Outrank(outranked.build, outranked.by) if outranked else None,
        trees=tuple(_tree_card(config, pipeline_config, tree) for tree in pipeline.trees),
        sources=tuple(_source_card(kind, name, state.sources) for kind, name in pipeline.sources),
        canaries=_canary_cards(pipeline_config, state),
    )


def _stage_card(pipeline: PipelineState, stage: str, now: float) -> StageCard:
    version = next((v for v in pipeline.versions if v.stage == stage), None)
    built = pipeline.created.get(stage)
    return StageCard(
        stage=stage,
        version=version.version if version else None,
        sha=version.sha if version else None,
        digest=version.digest if version else None,
        built_at=built,
        age_seconds=max(0.0, now - built) if built is not None else None,
        applied_at=pipeline.applied.get(stage),
        lag_seconds=pipeline.lags.get(stage),
        prerelease=version.prerelease if version else None,
    )


def _tree_card(config: Config, pipeline: PipelineConfig, tree: TreeState) -> TreeCard:
    placeholders = _placeholders(config, pipeline, tree)
    seen = {state.node.id: state for state in tree.nodes}
    wired = wiring(pipeline)
    nodes = []
    for node in _tree(tree.tree.id).nodes:
        state = seen.get(node.id)
        if state is None:
            missing = sorted(node.requires - wired)
            status, detail = "absent", "; ".join(_NOT_WIRED[w] for w in missing)
        else:
            status, detail = state.status, state.detail
        nodes.append(_node_card(node, status, detail, placeholders))
    return TreeCard(
        id=tree.tree.id,
        title=tree.tree.title,
        healthy=tree.tree.healthy,
        candidate_version=tree.candidate_version,
        candidate_sha=tree.candidate_sha,
        nodes=tuple(nodes),
    )


def _tree(tree_id: str) -> Tree:
    return next(tree for tree in TREES if tree.id == tree_id)


def _node_card(node: Node, status: str, detail: str, placeholders: seed.Placeholders) -> NodeCard:
    return NodeCard(
        id=node.id,
        alert=node.alert,
        question=node.question,
        severity=node.severity,
        for_=node.for_,
        status=status,
        detail=detail,
        commands=tuple(placeholders.fill(command) for command in node.commands),
        causes=node.causes,
    )


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
    return replace(defaults, **{k: v for k, v in known.items() if v})


def _source_card(kind: str, name: str, statuses: Iterable[SourceStatus]) -> SourceCard:
    status = next((s for s in statuses if (s.kind, s.name) == (kind, name)), None)
    if status is None:
        return SourceCard(kind, name, False, None, "not_polled", None)
    return SourceCard(
        kind,
        name,
        status.up,
        status.last_success,
        status.error.value if status.error else None,
        status.duration_seconds,
    )


def _canary_cards(pipeline: PipelineConfig, state: State) -> tuple[CanaryCard, ...]:
    wanted = sorted(
        {
            (stage.cluster, ref.namespace, ref.name)
            for stage in pipeline.stages.values()
            for ref in stage.canaries
        }
    )
    present = {(o.cluster, o.namespace, o.name): o.present for o in state.objects}
    last = {(c.cluster, c.namespace, c.canary): c.last_check for c in state.canaries}
    return tuple(
        CanaryCard(
            cluster,
            namespace,
            name,
            present.get((cluster, namespace, name)),
            last.get((cluster, namespace, name)),
            tuple(
                CheckCard(check.check, check.healthy, check.uptime_ratio)
                for check in state.canary_checks
                if (check.cluster, check.namespace, check.canary) == (cluster, namespace, name)
            ),
        )
        for cluster, namespace, name in wanted
    )


# --- JSON ----------------------------------------------------------------------------------


def to_json(view: StateView) -> dict[str, Any]:
    """The view as JSON-ready data; `for_` is written as `for`, and trees carry their stop."""
    data = asdict(view)
    for pipeline, card in zip(data["pipelines"], view.pipelines, strict=True):
        for stage, stage_card in zip(pipeline["stages"], card.stages, strict=True):
            stage["behind"] = stage_card.behind
        for tree, tree_card in zip(pipeline["trees"], card.trees, strict=True):
            stop = tree_card.stop
            tree["stop"] = stop.id if stop else None
            tree["verdict"] = tree_card.verdict
            for node in tree["nodes"]:
                node["for"] = node.pop("for_")
    return data


class ViewError(ValueError):
    """The JSON is not a state view of this API version."""


def from_json(data: Any) -> StateView:
    if not isinstance(data, dict) or data.get("api_version") != API_VERSION:
        found = data.get("api_version") if isinstance(data, dict) else type(data).__name__
        raise ViewError(f"expected api_version {API_VERSION!r}, got {found!r}")
    view: StateView = _decode(StateView, data, "$")
    return view


def _decode(kind: Any, value: Any, path: str) -> Any:
    """JSON to the typed view, by the dataclasses' own annotations; derived keys are ignored."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(kind) if arg is not type(None)]
        return None if value is None else _decode(options[0], value, path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ViewError(f"{path}: expected a list")
        (item,) = (arg for arg in get_args(kind) if arg is not Ellipsis)
        return tuple(_decode(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(kind, type) and is_dataclass(kind):
        if not isinstance(value, dict):
            raise ViewError(f"{path}: expected an object")
        hints = get_type_hints(kind)
        values: dict[str, Any] = {}
        for field in fields(kind):
            key = "for" if field.name == "for_" else field.name
            if key not in value:
                raise ViewError(f"{path}: missing {key!r}")
            values[field.name] = _decode(hints[field.name], value[key], f"{path}.{key}")
        constructor: Callable[..., Any] = kind
        return constructor(**values)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind):
        raise ViewError(f"{path}: expected {kind.__name__}")
    return value
