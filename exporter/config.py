"""Loads the YAML config strictly: every problem is reported at once with its key path."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter import redact, seed
from exporter.snapshot import ObjectRef
from exporter.versions import Constraint, ConstraintError

STAGE_NAMES = ("integration", "live")
DEFAULT_INTERVAL = "30s"
DEFAULT_TIMEOUT = "10s"
DEFAULT_GRACE_POLLS = 3
_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_OCI_URL = re.compile(r"^oci://([^/\s@]+)/([a-z0-9]+(?:[._/-][a-z0-9]+)*)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# What a pipeline's own `github` may change; url, token and branch are the connection's.
_PIPELINE_GITHUB_KEYS = ("repository", "watch_path", "build_workflow", "promote_workflow")
# A config is a few kilobytes; these bound what a hostile or broken file can cost to load.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NESTING = 64
MAX_NODES = 100_000  # YAML nodes after aliases are expanded: a "billion laughs" stops here
# (lowest, highest) for each duration key, in seconds, and for grace_polls.
_DURATION_RANGES = {"interval": (1.0, 3600.0), "timeout": (1.0, 300.0)}
_GRACE_RANGE = (1, 100)
_SHOWN = 40  # characters of a bad value quoted in a message


def _shown(value: object) -> str:
    """A bad value for a message, cut short: the value may be huge (or an alias bomb)."""
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= _SHOWN else text[: _SHOWN - 4] + "...'"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every one as 'key.path: message'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid config:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def parse_duration(text: str) -> float:
    """A Prometheus duration ('30s', '1h30m', '500ms') in seconds; ValueError if malformed."""
    match = _DURATION.match(text) if isinstance(text, str) and text else None
    if not match or not any(match.groups()):
        raise ValueError(f"{_shown(text)} is not a duration like 30s, 5m or 1h30m")
    amounts = match.groups()[1::2]
    return sum(int(n) * unit for n, unit in zip(amounts, _DURATION_UNITS, strict=True) if n)


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file. Never the secret itself."""

    env: str | None = None
    file: Path | None = None

    def read(self) -> str | None:
        """The secret, registered for redaction before anyone else sees it."""
        value = None
        if self.env:
            value = os.environ.get(self.env) or None
        elif self.file:
            value = self.file.read_text().strip() or None
        redact.register(value)
        return value

    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"


@dataclass(frozen=True)
class GitHubConfig:
    url: str
    repository: str
    token: SecretRef | None
    branch: str
    watch_path: str
    build_workflow: str
    promote_workflow: str | None  # None: no tag workflow (the stable-only flow)


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    kubeconfig: Path | None
    context: str | None
    in_cluster: bool


@dataclass(frozen=True)
class StageConfig:
    name: str  # integration | live
    cluster: str
    semver: Constraint
    source: ObjectRef
    kustomization: ObjectRef
    canaries: tuple[ObjectRef, ...]


@dataclass(frozen=True)
class RegistryAuth:
    username: SecretRef | None
    token: SecretRef


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    artifact: str  # oci://host/path
    plain_http: bool
    registry_auth: RegistryAuth | None
    stages: dict[str, StageConfig]
    alert: ObjectRef | None  # None (with provider): no dispatch wiring to check
    provider: ObjectRef | None
    github: GitHubConfig | None = None  # the top-level github with this pipeline's overrides
    helm_release_namespaces: tuple[str, ...] = ()  # empty: every namespace

    @property
    def registry_host(self) -> str:
        return self.artifact.removeprefix("oci://").split("/", 1)[0]

    @property
    def repository_path(self) -> str:
        return self.artifact.removeprefix("oci://").split("/", 1)[1]

    @property
    def registry_repository(self) -> str:
        """host/path, the name the registry source is exported under."""
        return self.artifact.removeprefix("oci://")


@dataclass(frozen=True)
class Config:
    interval: float
    timeout: float
    github: GitHubConfig | None
    clusters: dict[str, ClusterConfig]
    pipelines: tuple[PipelineConfig, ...] = field(default_factory=tuple)
    grace_polls: int = 3  # failed polls in a row for which a source's last good data is used


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    return parse_config(_load_yaml(path, _read_text(path)))


def _read_text(path: str | Path) -> str:
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a config"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: not UTF-8 text (byte {error.start})"]) from None


def _load_yaml(path: str | Path, text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: not valid YAML: {_yaml_position(error)}"]) from None
    finally:
        loader.dispose()


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what no config needs: duplicate keys, deep nesting, and
    aliases that expand to more than MAX_NODES nodes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested deeper than {MAX_NESTING} levels",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None and _expanded_size(node, {}) > MAX_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases expand to more than {MAX_NODES} nodes, or refer to themselves",
                node.start_mark,
            )
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # a merged mapping's keys may be overridden: that is its point
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {_shown(key)}", key_node.start_mark
                        )
                    seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """Nodes in the document with every alias expanded; a shared node is counted once per
    use but computed once, so a bomb costs its size in the count, not in time."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_NODES + 1  # while counting: a node inside itself is over the limit
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = min(size, MAX_NODES + 1)
    return sizes[id(node)]


def _yaml_position(error: yaml.YAMLError) -> str:
    """The problem and its line and column, without PyYAML's quote of the line itself."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return "syntax error"
    mark, problem = error.problem_mark, error.problem or "syntax error"
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def parse_config(raw: Any) -> Config:
    checker = _Checker()
    config = checker.config(raw)
    if checker.problems:
        raise ConfigError(checker.problems)
    assert config is not None
    return config


class _Checker:
    """Walks the raw YAML, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path or 'config'}: {message}")

    def mapping(self, raw: Any, path: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problem(path, f"must be a mapping, got {type(raw).__name__}")
            return {}
        for key in sorted(set(raw) - allowed, key=str):
            self.problem(_join(path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - set(raw)):
            self.problem(_join(path, key), "is required")
        return raw

    def string(
        self, raw: dict[str, Any], key: str, path: str, default: str | None = None
    ) -> str | None:
        value = raw.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            self.problem(_join(path, key), "must be a non-empty string")
            return default
        return value

    def boolean(self, raw: dict[str, Any], key: str, path: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.problem(_join(path, key), "must be true or false")
            return default
        return value

    def count(self, raw: dict[str, Any], key: str, path: str, default: int) -> int:
        value = raw.get(key, default)
        low, high = _GRACE_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(_join(path, key), f"must be a whole number from {low} to {high}")
            return default
        return value

    def duration(self, raw: dict[str, Any], key: str, path: str, default: str) -> float:
        try:
            seconds = parse_duration(raw.get(key, default))
        except ValueError as error:
            self.problem(_join(path, key), str(error))
            return parse_duration(default)
        low, high = _DURATION_RANGES[key]
        if not low <= seconds <= high:
            self.problem(_join(path, key), f"must be from {_seconds(low)} to {_seconds(high)}")
            return parse_duration(default)
        return seconds

    def secret(self, raw: Any, path: str, prefix: str) -> SecretRef | None:
        env, file = raw.get(f"{prefix}_env"), raw.get(f"{prefix}_file")
        if prefix in raw:
            self.problem(
                _join(path, prefix),
                f"inline secrets are refused: use {prefix}_env or {prefix}_file",
            )
        if env is not None and file is not None:
            self.problem(path, f"set {prefix}_env or {prefix}_file, not both")
            return None
        if env is not None:
            if not isinstance(env, str) or not _ENV_NAME.match(env):
                self.problem(f"{path}.{prefix}_env", "must be an environment variable name")
                return None
            return SecretRef(env=env)
        if file is not None:
            if not isinstance(file, str) or not file:
                self.problem(f"{path}.{prefix}_file", "must be a file path")
                return None
            return SecretRef(file=Path(file).expanduser())
        return None

    def config(self, raw: Any) -> Config | None:
        raw = self.mapping(
            raw,
            "",
            {"interval", "timeout", "grace_polls", "github", "clusters", "pipelines"},
            {"clusters", "pipelines"},
        )
        interval = self.duration(raw, "interval", "", DEFAULT_INTERVAL)
        timeout = self.duration(raw, "timeout", "", DEFAULT_TIMEOUT)
        grace_polls = self.count(raw, "grace_polls", "", DEFAULT_GRACE_POLLS)
        github = self.github(raw["github"]) if raw.get("github") is not None else None
        clusters = self.clusters(raw.get("clusters"))
        pipelines = self.pipelines(raw.get("pipelines"), clusters, github)
        return Config(interval, timeout, github, clusters, pipelines, grace_polls)

    def github(self, raw: Any) -> GitHubConfig:
        path = "github"
        allowed = {
            "url",
            "repository",
            "token_env",
            "token_file",
            "branch",
            "watch_path",
            "build_workflow",
            "promote_workflow",
            "token",
        }
        raw = self.mapping(raw, path, allowed, {"repository"})
        url = self.string(raw, "url", path, seed.GITHUB_URL) or ""
        if not url.startswith(("https://", "http://")):
            self.problem(f"{path}.url", "must be an http(s) URL")
        defaults: dict[str, Any] = {
            "repository": "",
            "watch_path": seed.WATCH_PATH,
            "build_workflow": seed.BUILD_WORKFLOW,
            "promote_workflow": seed.PROMOTE_WORKFLOW,
        }
        return GitHubConfig(
            url=url.rstrip("/"),
            token=self.secret(raw, path, "token"),
            branch=self.string(raw, "branch", path, seed.BRANCH) or seed.BRANCH,
            **(defaults | self.github_fields(raw, path)),
        )

    def github_fields(self, raw: dict[str, Any], path: str) -> dict[str, Any]:
        """The watch keys present in raw; null is allowed where it means something."""
        fields: dict[str, Any] = {}  # GitHubConfig fields, for dataclasses.replace
        for key in (key for key in _PIPELINE_GITHUB_KEYS if key in raw):
            value = raw[key]
            if value is None and key == "promote_workflow":
                fields[key] = None  # the stable-only flow: no tag workflow to read
            elif value is None and key == "watch_path":
                fields[key] = ""  # every commit on the branch counts
            elif not isinstance(value, str) or not value:
                self.problem(_join(path, key), "must be a non-empty string")
            else:
                fields[key] = value
        repository = fields.get("repository")
        if repository and not _REPOSITORY.match(repository):
            self.problem(f"{path}.repository", f"{_shown(repository)} is not OWNER/REPO")
        return fields

    def pipeline_github(
        self, raw: dict[str, Any], path: str, top: GitHubConfig | None
    ) -> GitHubConfig | None:
        if raw.get("github") is None:
            return top
        path = f"{path}.github"
        fields = self.github_fields(
            self.mapping(raw["github"], path, set(_PIPELINE_GITHUB_KEYS), set()), path
        )
        if top is None:
            self.problem(path, "needs a top-level github section: url, token and branch live there")
            return None
        return dataclasses.replace(top, **fields)

    def clusters(self, raw: Any) -> dict[str, ClusterConfig]:
        if not isinstance(raw, dict) or not raw:
            if raw is not None:
                self.problem("clusters", "must be a non-empty mapping of cluster name to settings")
            return {}
        return {name: self.cluster(name, value) for name, value in raw.items()}

    def cluster(self, name: Any, raw: Any) -> ClusterConfig:
        path = f"clusters.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            self.problem(path, "cluster names are lowercase letters, digits, '-' and '_'")
        raw = self.mapping(raw, path, {"kubeconfig", "context", "in_cluster"}, set())
        in_cluster = self.boolean(raw, "in_cluster", path, False)
        kubeconfig = self.string(raw, "kubeconfig", path)
        if in_cluster == bool(kubeconfig):
            self.problem(path, "set exactly one of kubeconfig or in_cluster: true")
        return ClusterConfig(
            name=str(name),
            kubeconfig=Path(kubeconfig).expanduser() if kubeconfig else None,
            context=self.string(raw, "context", path),
            in_cluster=in_cluster,
        )

    def pipelines(
        self, raw: Any, clusters: dict[str, ClusterConfig], github: GitHubConfig | None
    ) -> tuple[PipelineConfig, ...]:
        if not isinstance(raw, list) or not raw:
            if raw is not None:
                self.problem("pipelines", "must be a non-empty list")
            return ()
        pipelines = tuple(self.pipeline(i, item, clusters, github) for i, item in enumerate(raw))
        names = [p.name for p in pipelines]
        for duplicate in sorted({n for n in names if names.count(n) > 1}):
            self.problem("pipelines", f"pipeline name {_shown(duplicate)} is used more than once")
        self.shared_objects(pipelines)
        return pipelines

    def shared_objects(self, pipelines: tuple[PipelineConfig, ...]) -> None:
        """Two pipelines reading one OCIRepository or Kustomization would each claim its state."""
        owners: dict[tuple[str, str, ObjectRef], str] = {}
        for index, pipeline in enumerate(pipelines):
            mine: dict[tuple[str, str, ObjectRef], str] = {}
            for stage in pipeline.stages.values():
                for field_name, kind, ref in (
                    ("source", "OCIRepository", stage.source),
                    ("kustomization", "Kustomization", stage.kustomization),
                ):
                    key, path = (
                        (stage.cluster, kind, ref),
                        f"pipelines[{index}].stages.{stage.name}.{field_name}",
                    )
                    if key in owners:
                        where = f"{kind} {ref.namespace}/{ref.name} in cluster {stage.cluster}"
                        self.problem(path, f"{where} is also watched by {owners[key]}")
                    mine.setdefault(key, path)
            owners = mine | owners

    def pipeline(
        self,
        index: int,
        raw: Any,
        clusters: dict[str, ClusterConfig],
        github: GitHubConfig | None,
    ) -> PipelineConfig:
        path = f"pipelines[{index}]"
        allowed = {
            "name",
            "artifact",
            "plain_http",
            "registry_auth",
            "stages",
            "source",
            "kustomization",
            "canaries",
            "alert",
            "provider",
            "github",
            "helm_release_namespaces",
        }
        raw = self.mapping(raw, path, allowed, {"name", "artifact", "stages"})
        name = self.string(raw, "name", path) or f"pipeline-{index}"
        if not _NAME.match(name):
            self.problem(f"{path}.name", "lowercase letters, digits, '-' and '_' only")
        artifact = self.string(raw, "artifact", path) or "oci://invalid/invalid"
        if not _OCI_URL.match(artifact):
            self.problem(
                f"{path}.artifact",
                "must be oci://HOST/PATH (lowercase, no credentials: use registry_auth)",
            )
            artifact = "oci://invalid/invalid"
        defaults = {
            "source": self.object_name(raw.get("source"), f"{path}.source", seed.SOURCE_NAME),
            "kustomization": self.object_name(
                raw.get("kustomization"), f"{path}.kustomization", seed.KUSTOMIZATION_NAME
            ),
            "canaries": self.object_names(raw.get("canaries", [{}]), f"{path}.canaries"),
        }
        alert, provider = self.dispatch(raw, path)
        return PipelineConfig(
            name=name,
            artifact=artifact,
            plain_http=self.boolean(raw, "plain_http", path, False),
            registry_auth=self.registry_auth(raw.get("registry_auth"), f"{path}.registry_auth"),
            stages=self.stages(raw.get("stages"), f"{path}.stages", clusters, defaults),
            alert=alert,
            provider=provider,
            github=self.pipeline_github(raw, path, github),
            helm_release_namespaces=self.namespaces(
                raw.get("helm_release_namespaces"), f"{path}.helm_release_namespaces"
            ),
        )

    def dispatch(self, raw: dict[str, Any], path: str) -> tuple[ObjectRef | None, ObjectRef | None]:
        """The Alert and Provider; both null means the pipeline has no dispatch wiring."""
        nulls = [key for key in ("alert", "provider") if key in raw and raw[key] is None]
        if len(nulls) == 2:
            return None, None
        if nulls:
            (null,) = nulls
            other = "provider" if null == "alert" else "alert"
            self.problem(
                f"{path}.{null}",
                f"is null but {other} is not: set both to null (no dispatch wiring) or neither",
            )
        return (
            self.object_name(raw.get("alert"), f"{path}.alert", seed.ALERT_NAME),
            self.object_name(raw.get("provider"), f"{path}.provider", seed.PROVIDER_NAME),
        )

    def namespaces(self, raw: Any, path: str) -> tuple[str, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem(path, "must be a list of namespace names")
            return ()
        names = []
        for i, item in enumerate(raw):
            if isinstance(item, str) and _DNS_LABEL.fullmatch(item):
                names.append(item)
            else:
                self.problem(
                    f"{path}[{i}]",
                    f"{_shown(item)} is not a namespace name (a DNS-1123 label: at most 63 "
                    "lowercase letters, digits and '-', starting and ending with a letter or "
                    "digit)",
                )
        return tuple(dict.fromkeys(names))

    def registry_auth(self, raw: Any, path: str) -> RegistryAuth | None:
        if raw is None:
            return None
        raw = self.mapping(
            raw,
            path,
            {"username_env", "username_file", "token_env", "token_file", "token", "username"},
            set(),
        )
        if "username" in raw:
            self.problem(f"{path}.username", "use username_env or username_file")
        token = self.secret(raw, path, "token")
        if token is None:
            self.problem(path, "needs token_env or token_file")
            return None
        return RegistryAuth(username=self.secret(raw, path, "username"), token=token)

    def stages(
        self, raw: Any, path: str, clusters: dict[str, ClusterConfig], defaults: dict[str, Any]
    ) -> dict[str, StageConfig]:
        raw = self.mapping(raw, path, set(STAGE_NAMES), set())
        if not raw:
            self.problem(path, f"needs at least one of {', '.join(STAGE_NAMES)}")
        return {
            name: self.stage(name, raw[name], f"{path}.{name}", clusters, defaults)
            for name in STAGE_NAMES
            if name in raw
        }

    def stage(
        self,
        name: str,
        raw: Any,
        path: str,
        clusters: dict[str, ClusterConfig],
        defaults: dict[str, Any],
    ) -> StageConfig:
        raw = self.mapping(
            raw, path, {"cluster", "semver", "source", "kustomization", "canaries"}, {"cluster"}
        )
        cluster = self.string(raw, "cluster", path) or ""
        if cluster and clusters and cluster not in clusters:
            self.problem(f"{path}.cluster", f"{_shown(cluster)} is not defined under clusters")
        default_semver = seed.STAGE_SEMVER[name]
        return StageConfig(
            name=name,
            cluster=cluster,
            semver=self.constraint(raw.get("semver", default_semver), f"{path}.semver"),
            source=(
                self.object_name(raw["source"], f"{path}.source", seed.SOURCE_NAME)
                if "source" in raw
                else defaults["source"]
            ),
            kustomization=(
                self.object_name(
                    raw["kustomization"], f"{path}.kustomization", seed.KUSTOMIZATION_NAME
                )
                if "kustomization" in raw
                else defaults["kustomization"]
            ),
            canaries=(
                self.object_names(raw["canaries"], f"{path}.canaries")
                if "canaries" in raw
                else defaults["canaries"]
            ),
        )

    def constraint(self, raw: Any, path: str) -> Constraint:
        try:
            if not isinstance(raw, str):
                raise ConstraintError("must be a string such as '>= 0.0.0'")
            return Constraint.parse(raw)
        except ConstraintError as error:
            self.problem(path, f"invalid semver constraint: {error}")
            return Constraint.parse(">= 0.0.0")

    def object_name(self, raw: Any, path: str, default_name: str) -> ObjectRef:
        raw = self.mapping(raw, path, {"namespace", "name"}, set())
        namespace = self.string(raw, "namespace", path, seed.FLUX_NAMESPACE) or seed.FLUX_NAMESPACE
        name = self.string(raw, "name", path, default_name) or default_name
        return ObjectRef(namespace, name)

    def object_names(self, raw: Any, path: str) -> tuple[ObjectRef, ...]:
        if not isinstance(raw, list):
            self.problem(path, "must be a list of {namespace, name}")
            return ()
        names = []
        for i, item in enumerate(raw):
            item_path = f"{path}[{i}]"
            fields = self.mapping(item, item_path, {"namespace", "name"}, set())
            names.append(
                ObjectRef(
                    self.string(fields, "namespace", item_path, seed.CANARY_NAMESPACE)
                    or seed.CANARY_NAMESPACE,
                    self.string(fields, "name", item_path, seed.CANARY_NAME) or "",
                )
            )
        return tuple(names)
