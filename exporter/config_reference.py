"""The config file's reference: one row per key, for the README's table.

`make generate` writes the rows between the README's config-reference markers. Defaults are
the loader's own constants, so the table cannot drift from them; tests check every row against
what the loader accepts and does.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter import seed
from exporter.config import DEFAULT_GRACE_POLLS, DEFAULT_INTERVAL, DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Key:
    key: str  # dotted path; pipelines[] is each entry, <name> any cluster, <stage> a stage
    type: str
    default: str  # the Markdown cell
    meaning: str


def _code(value: object) -> str:
    return f"`{value}`"


def _flow(namespace: str, name: str) -> str:
    return f"{{namespace: {namespace}, name: {name}}}"


def _ref(namespace: str, name: str) -> str:
    return f"`{_flow(namespace, name)}`"


_SEMVER = ", ".join(f"`{semver}` for {stage}" for stage, semver in seed.STAGE_SEMVER.items())

KEYS = (
    Key(
        "interval",
        "duration",
        _code(DEFAULT_INTERVAL),
        "How often every source is polled. Scrapes read the last poll, so several Prometheus "
        "servers add no traffic.",
    ),
    Key("timeout", "duration", _code(DEFAULT_TIMEOUT), "Timeout of each request to a source."),
    Key(
        "grace_polls",
        "whole number",
        _code(DEFAULT_GRACE_POLLS),
        "How many failed polls in a row a source's last good data is still used for, so one blip "
        "does not restart a `for:`. `promotion_source_up` drops to 0 at once; after that its facts"
        " are unknown.",
    ),
    Key(
        "github",
        "mapping",
        "`null`",
        "Optional. Adds the build and promote workflow nodes to the integration tree and lets the "
        "dispatch node see the promote run.",
    ),
    Key(
        "github.url",
        "URL",
        _code(seed.GITHUB_URL),
        "API root; GitHub Enterprise is `https://HOST/api/v3`.",
    ),
    Key(
        "github.repository",
        "`OWNER/REPO`",
        "required",
        "The repository whose workflows build and promote the artifact.",
    ),
    Key(
        "github.token_env",
        "variable name",
        "none",
        "Environment variable holding the token. Without a token GitHub allows 60 requests an "
        "hour.",
    ),
    Key("github.token_file", "path", "none", "File holding the token (instead of `token_env`)."),
    Key(
        "github.branch",
        "string",
        _code(seed.BRANCH),
        "Branch whose newest commit under `watch_path` is the newest build.",
    ),
    Key(
        "github.watch_path",
        "string",
        _code(seed.WATCH_PATH),
        "Only commits touching this path trigger the build workflow.",
    ),
    Key(
        "github.build_workflow",
        "file name",
        _code(seed.BUILD_WORKFLOW),
        "The workflow that pushes `X.Y.Z-rc.N`.",
    ),
    Key(
        "github.promote_workflow",
        "file name",
        _code(seed.PROMOTE_WORKFLOW),
        "The workflow that tags `validated-<sha>` and `X.Y.Z`. `null` in the stable-only flow (the"
        " build tags `X.Y.Z` itself): the tag workflow node is then absent. A file GitHub does not"
        " know is a finding on that node, not a dead source.",
    ),
    Key(
        "clusters", "mapping", "required", "Cluster name to how to reach it; each stage names one."
    ),
    Key(
        "clusters.<name>.kubeconfig",
        "path",
        "none",
        "Kubeconfig file (`~` expanded). Set this or `in_cluster`.",
    ),
    Key(
        "clusters.<name>.context",
        "string",
        "`null`",
        "Context in the kubeconfig; its current-context when null.",
    ),
    Key(
        "clusters.<name>.in_cluster",
        "boolean",
        "`false`",
        "Use the pod's ServiceAccount: for the cluster the exporter runs in.",
    ),
    Key("pipelines", "list", "required", "One entry per promoted artifact."),
    Key(
        "pipelines[].name",
        "string",
        "required",
        "The `pipeline` label; lowercase letters, digits, `-` and `_`.",
    ),
    Key(
        "pipelines[].artifact",
        "`oci://HOST/PATH`",
        "required",
        "The artifact's repository, lowercase, as Flux's OCIRepository names it.",
    ),
    Key(
        "pipelines[].plain_http",
        "boolean",
        "`false`",
        "Plain HTTP to the registry: only for a local registry without TLS.",
    ),
    Key(
        "pipelines[].github",
        "mapping",
        "the top-level `github`",
        "This pipeline's own `repository`, `watch_path`, `build_workflow` or `promote_workflow`; "
        "url, token and branch stay the top-level ones.",
    ),
    Key("pipelines[].github.repository", "`OWNER/REPO`", "from `github`", ""),
    Key("pipelines[].github.watch_path", "string", "from `github`", ""),
    Key("pipelines[].github.build_workflow", "file name", "from `github`", ""),
    Key(
        "pipelines[].github.promote_workflow",
        "file name",
        "from `github`",
        "`null`: this pipeline has no tag workflow.",
    ),
    Key(
        "pipelines[].helm_release_namespaces",
        "list",
        "`[]`",
        "Namespaces whose HelmReleases in live must be Ready (PromotionLiveHelmReleaseFailing); "
        "empty means all.",
    ),
    Key(
        "pipelines[].registry_auth",
        "mapping",
        "`null`",
        "Registry credentials; anonymous when absent (enough for a public GHCR package).",
    ),
    Key(
        "pipelines[].registry_auth.username_env",
        "variable name",
        "none",
        "User name; GHCR accepts any, so it may be left out.",
    ),
    Key("pipelines[].registry_auth.username_file", "path", "none", "User name from a file."),
    Key(
        "pipelines[].registry_auth.token_env",
        "variable name",
        "none",
        "Token or password; one of `token_env` or `token_file` is required. GHCR: a PAT with "
        "`read:packages`.",
    ),
    Key("pipelines[].registry_auth.token_file", "path", "none", "Token or password from a file."),
    Key("pipelines[].stages", "mapping", "required", "At least one of `integration` and `live`."),
    Key(
        "pipelines[].stages.integration",
        "mapping",
        "none",
        "The stage that deploys release candidates.",
    ),
    Key("pipelines[].stages.live", "mapping", "none", "The stage that deploys stable versions."),
    Key("pipelines[].stages.<stage>.cluster", "cluster name", "required", "A key of `clusters`."),
    Key(
        "pipelines[].stages.<stage>.semver",
        "semver constraint",
        _SEMVER,
        "What this stage's OCIRepository should select (Masterminds rules, as Flux applies them).",
    ),
    Key(
        "pipelines[].stages.<stage>.source",
        "mapping",
        "the pipeline's `source`",
        "The stage's OCIRepository, when its names differ from the pipeline's.",
    ),
    Key("pipelines[].stages.<stage>.source.namespace", "string", _code(seed.FLUX_NAMESPACE), ""),
    Key("pipelines[].stages.<stage>.source.name", "string", _code(seed.SOURCE_NAME), ""),
    Key(
        "pipelines[].stages.<stage>.kustomization",
        "mapping",
        "the pipeline's `kustomization`",
        "The stage's Kustomization.",
    ),
    Key(
        "pipelines[].stages.<stage>.kustomization.namespace",
        "string",
        _code(seed.FLUX_NAMESPACE),
        "",
    ),
    Key(
        "pipelines[].stages.<stage>.kustomization.name",
        "string",
        _code(seed.KUSTOMIZATION_NAME),
        "",
    ),
    Key(
        "pipelines[].stages.<stage>.canaries",
        "list",
        "the pipeline's `canaries`",
        "The stage's canary-checker Canaries.",
    ),
    Key(
        "pipelines[].stages.<stage>.canaries[].namespace",
        "string",
        _code(seed.CANARY_NAMESPACE),
        "",
    ),
    Key("pipelines[].stages.<stage>.canaries[].name", "string", _code(seed.CANARY_NAME), ""),
    Key(
        "pipelines[].source",
        "mapping",
        _ref(seed.FLUX_NAMESPACE, seed.SOURCE_NAME),
        "The OCIRepository in every stage's cluster.",
    ),
    Key("pipelines[].source.namespace", "string", _code(seed.FLUX_NAMESPACE), ""),
    Key("pipelines[].source.name", "string", _code(seed.SOURCE_NAME), ""),
    Key(
        "pipelines[].kustomization",
        "mapping",
        _ref(seed.FLUX_NAMESPACE, seed.KUSTOMIZATION_NAME),
        "The Kustomization that applies the artifact.",
    ),
    Key("pipelines[].kustomization.namespace", "string", _code(seed.FLUX_NAMESPACE), ""),
    Key("pipelines[].kustomization.name", "string", _code(seed.KUSTOMIZATION_NAME), ""),
    Key(
        "pipelines[].canaries",
        "list",
        f"`[{_flow(seed.CANARY_NAMESPACE, seed.CANARY_NAME)}]`",
        "canary-checker Canaries whose checks become `promotion_canary_check_healthy`.",
    ),
    Key("pipelines[].canaries[].namespace", "string", _code(seed.CANARY_NAMESPACE), ""),
    Key("pipelines[].canaries[].name", "string", _code(seed.CANARY_NAME), ""),
    Key(
        "pipelines[].alert",
        "mapping",
        _ref(seed.FLUX_NAMESPACE, seed.ALERT_NAME),
        "The Flux Alert that fires the dispatch, read in the integration cluster. `null` (with "
        "`provider: null`): no dispatch wiring, and the dispatch node is absent. Two pipelines may"
        " not watch the same OCIRepository or Kustomization in one cluster.",
    ),
    Key("pipelines[].alert.namespace", "string", _code(seed.FLUX_NAMESPACE), ""),
    Key("pipelines[].alert.name", "string", _code(seed.ALERT_NAME), ""),
    Key(
        "pipelines[].provider",
        "mapping",
        _ref(seed.FLUX_NAMESPACE, seed.PROVIDER_NAME),
        "The Alert's Provider, read in the integration cluster: `githubdispatch` (runs `on: "
        "repository_dispatch` count) or `github` (Flux's commit status `kustomization/<name>/...` "
        "and runs `on: status` count). `null` with `alert: null`.",
    ),
    Key("pipelines[].provider.namespace", "string", _code(seed.FLUX_NAMESPACE), ""),
    Key("pipelines[].provider.name", "string", _code(seed.PROVIDER_NAME), ""),
)


def table() -> str:
    lines = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    # An empty meaning is an empty cell, "| |", as a Markdown editor writes it.
    lines += [
        f"| `{k.key}` | {k.type} | {k.default} | {k.meaning} |".replace("|  |", "| |") for k in KEYS
    ]
    return "\n".join(lines) + "\n"
