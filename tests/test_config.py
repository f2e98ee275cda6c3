"""The config loader: seed defaults, the contract's example, strictness and secret handling."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import (
    ConfigError,
    GitHubConfig,
    SecretRef,
    load_config,
    parse_config,
    parse_duration,
)
from exporter.snapshot import ObjectRef
from exporter.versions import Version

SECRET = "ghp_Sup3rSecretTokenValue0123456789abcdef"

MINIMAL = """\
github:
  repository: owner/homelab
clusters:
  integration: {kubeconfig: ~/.kube/integration.yaml}
  live: {kubeconfig: ~/.kube/live.yaml}
pipelines:
  - name: platform
    artifact: oci://ghcr.io/owner/homelab/platform
    stages:
      integration: {cluster: integration}
      live: {cluster: live}
"""

# The example of /work/shared/contract.md, comments included, with its OWNER and REPO
# placeholders filled in: OCI repository names are lowercase, so "OWNER" itself is refused.
CONTRACT_EXAMPLE = """\
interval: 30s                      # poll period (duration string)
github:                            # optional; enables the build / dispatch / workflow checks
  url: https://api.github.com      # overridable (GitHub Enterprise, tests)
  repository: ionfury/homelab
  token_env: GITHUB_TOKEN          # or token_file: PATH   (never an inline token)
  branch: main
  watch_path: kubernetes/
  build_workflow: build-platform-artifact.yaml
  promote_workflow: tag-validated-artifact.yaml
clusters:
  integration: {kubeconfig: ~/.kube/integration.yaml, context: null}   # or {in_cluster: true}
  live:        {kubeconfig: ~/.kube/live.yaml}
pipelines:
  - name: platform
    artifact: oci://ghcr.io/ionfury/homelab/platform
    plain_http: false              # true only for a local registry without TLS
    registry_auth: {username_env: GITHUB_USER, token_env: GITHUB_TOKEN}  # optional
    stages:
      integration: {cluster: integration, semver: ">= 0.0.0-0"}
      live:        {cluster: live,        semver: ">= 0.0.0"}
    # defaults below follow the seed; each may be overridden per pipeline or per stage
    source:        {namespace: flux-system, name: flux-system}     # OCIRepository
    kustomization: {namespace: flux-system, name: platform}
    canaries:      [{namespace: monitoring, name: platform-validation}]
    alert:         {namespace: flux-system, name: validation-success}
    provider:      {namespace: flux-system, name: github-dispatch}
"""


def minimal() -> dict[str, Any]:
    return yaml.safe_load(MINIMAL)


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def key_paths(problems: list[str]) -> list[str]:
    """The key path of each problem; a leading 'config.' names the file's top level."""
    return [problem.split(": ", 1)[0].removeprefix("config.") for problem in problems]


def with_change(path: str, value: Any) -> dict[str, Any]:
    """The minimal config with one key (dotted path, list indexes as numbers) set to value."""
    raw = copy.deepcopy(minimal())
    *parents, last = path.split(".")
    node: Any = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return raw


# --- Defaults and the contract's example -----------------------------------------------------


def test_minimal_config_takes_the_seed_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.interval == 30
    (pipeline,) = config.pipelines
    assert pipeline.name == "platform"
    assert pipeline.registry_host == "ghcr.io"
    assert pipeline.repository_path == "owner/homelab/platform"
    assert pipeline.plain_http is False
    assert pipeline.registry_auth is None
    assert pipeline.alert == ObjectRef("flux-system", "validation-success")
    assert pipeline.provider == ObjectRef("flux-system", "github-dispatch")
    for stage in pipeline.stages.values():
        assert stage.source == ObjectRef("flux-system", "flux-system")
        assert stage.kustomization == ObjectRef("flux-system", "platform")
        assert stage.canaries == (ObjectRef("monitoring", "platform-validation"),)
    assert pipeline.stages["integration"].semver.text == ">= 0.0.0-0"
    assert pipeline.stages["live"].semver.text == ">= 0.0.0"
    assert config.clusters["integration"].kubeconfig == Path.home() / ".kube/integration.yaml"
    assert config.clusters["live"].in_cluster is False


def test_default_constraints_admit_what_the_seed_says() -> None:
    stages = parse_config(minimal()).pipelines[0].stages
    rc, stable = Version.parse("0.3.6-rc.1"), Version.parse("0.3.5")
    assert rc is not None and stable is not None
    assert stages["integration"].semver.admits(rc)
    assert stages["integration"].semver.admits(stable)
    assert not stages["live"].semver.admits(rc)
    assert stages["live"].semver.admits(stable)


def test_github_defaults() -> None:
    assert parse_config(minimal()).github == GitHubConfig(
        url="https://api.github.com",
        repository="owner/homelab",
        token=None,
        branch="main",
        watch_path="kubernetes/",
        build_workflow="build-platform-artifact.yaml",
        promote_workflow="tag-validated-artifact.yaml",
    )


def test_github_is_optional() -> None:
    raw = minimal()
    del raw["github"]
    assert parse_config(raw).github is None


def test_contract_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONTRACT_EXAMPLE))
    assert config.github is not None
    assert config.github.repository == "ionfury/homelab"
    assert config.github.token == SecretRef(env="GITHUB_TOKEN")
    assert config.clusters["integration"].context is None
    (pipeline,) = config.pipelines
    assert pipeline.artifact == "oci://ghcr.io/ionfury/homelab/platform"
    assert pipeline.registry_auth is not None
    assert pipeline.registry_auth.username == SecretRef(env="GITHUB_USER")
    assert pipeline.registry_auth.token == SecretRef(env="GITHUB_TOKEN")
    assert set(pipeline.stages) == {"integration", "live"}
    assert pipeline.stages["live"].cluster == "live"


def test_overrides_per_pipeline_and_per_stage() -> None:
    raw = minimal()
    raw["interval"] = "1m"
    raw["pipelines"][0]["kustomization"] = {"name": "apps"}
    raw["pipelines"][0]["stages"]["live"]["source"] = {"namespace": "prod", "name": "platform"}
    raw["pipelines"][0]["stages"]["live"]["canaries"] = []
    raw["clusters"]["live"] = {"in_cluster": True}
    config = parse_config(raw)
    stages = config.pipelines[0].stages
    assert config.interval == 60
    assert config.clusters["live"].in_cluster is True
    assert stages["integration"].kustomization == ObjectRef("flux-system", "apps")
    assert stages["live"].kustomization == ObjectRef("flux-system", "apps")
    assert stages["integration"].source == ObjectRef("flux-system", "flux-system")
    assert stages["live"].source == ObjectRef("prod", "platform")
    assert stages["live"].canaries == ()


# --- Strictness: every problem, with its key path ------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("bogus", 1, "bogus"),
        ("github.bogus", 1, "github.bogus"),
        ("clusters.integration.bogus", 1, "clusters.integration.bogus"),
        ("pipelines.0.bogus", 1, "pipelines[0].bogus"),
        ("pipelines.0.stages.staging", {"cluster": "live"}, "pipelines[0].stages.staging"),
        ("pipelines.0.stages.live.bogus", 1, "pipelines[0].stages.live.bogus"),
        ("pipelines.0.source", {"nmespace": "x"}, "pipelines[0].source.nmespace"),
        ("pipelines.0.canaries", [{"name": "a", "bogus": 1}], "pipelines[0].canaries[0].bogus"),
        ("pipelines.0.alert", {"kind": "Alert"}, "pipelines[0].alert.kind"),
        (
            "pipelines.0.registry_auth",
            {"token_env": "T", "password_env": "P"},
            "pipelines[0].registry_auth.password_env",
        ),
    ],
)
def test_unknown_keys_are_rejected_at_every_level(path: str, value: Any, expected: str) -> None:
    problems = problems_of(with_change(path, value))
    assert key_paths(problems) == [expected]
    assert "unknown key" in problems[0]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("interval", 30, "interval"),
        ("github.repository", 5, "github.repository"),
        ("github.repository", "just-a-name", "github.repository"),
        ("github.url", "ftp://example.com", "github.url"),
        ("clusters", ["integration"], "clusters"),
        ("clusters.live.in_cluster", "yes", "clusters.live.in_cluster"),
        ("pipelines", {"name": "platform"}, "pipelines"),
        ("pipelines.0.plain_http", "false", "pipelines[0].plain_http"),
        ("pipelines.0.canaries", "platform-validation", "pipelines[0].canaries"),
        ("pipelines.0.stages.live.cluster", 3, "pipelines[0].stages.live.cluster"),
        ("pipelines.0.name", "Platform", "pipelines[0].name"),
    ],
)
def test_wrong_types_and_shapes_are_rejected(path: str, value: Any, expected: str) -> None:
    assert expected in key_paths(problems_of(with_change(path, value)))


@pytest.mark.parametrize("duration", ["30x", "", "-1s", "0s", "1.5h", "30"])
@pytest.mark.parametrize("key", ["interval", "timeout"])
def test_bad_durations_are_rejected(key: str, duration: str) -> None:
    assert key_paths(problems_of(with_change(key, duration))) == [key]


@pytest.mark.parametrize("constraint", [">= banana", "", ">= 1.0.0 ||", "1.2.3.4", 5])
def test_bad_semver_constraints_are_rejected(constraint: Any) -> None:
    problems = problems_of(with_change("pipelines.0.stages.integration.semver", constraint))
    assert key_paths(problems) == ["pipelines[0].stages.integration.semver"]
    assert "invalid semver constraint" in problems[0]


@pytest.mark.parametrize(
    "url",
    [
        "https://ghcr.io/owner/homelab/platform",
        "ghcr.io/owner/homelab/platform",
        "oci://ghcr.io",
        "oci://ghcr.io/",
        "oci://ghcr.io/Owner/Platform",
        "oci://ghcr.io/owner/platform:1.0.0",
        "oci://ghcr.io/owner//platform",
    ],
)
def test_bad_oci_urls_are_rejected(url: str) -> None:
    assert key_paths(problems_of(with_change("pipelines.0.artifact", url))) == [
        "pipelines[0].artifact"
    ]


def test_a_stage_on_an_undefined_cluster_is_rejected() -> None:
    problems = problems_of(with_change("pipelines.0.stages.live.cluster", "production"))
    assert key_paths(problems) == ["pipelines[0].stages.live.cluster"]
    assert "'production' is not defined under clusters" in problems[0]


@pytest.mark.parametrize(
    "cluster",
    [
        {"kubeconfig": "~/.kube/live.yaml", "in_cluster": True},
        {},
        {"context": "live"},
    ],
)
def test_a_cluster_needs_exactly_one_of_kubeconfig_and_in_cluster(cluster: dict) -> None:
    assert key_paths(problems_of(with_change("clusters.live", cluster))) == ["clusters.live"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("github.token", SECRET, "github.token"),
        ("pipelines.0.registry_auth", {"token": SECRET}, "pipelines[0].registry_auth.token"),
        (
            "pipelines.0.registry_auth",
            {"username": SECRET, "token_env": "T"},
            "pipelines[0].registry_auth.username",
        ),
    ],
)
def test_inline_secrets_are_refused_without_echoing_them(
    path: str, value: Any, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_change(path, value))
    assert expected in key_paths(caught.value.problems)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_a_secret_needs_one_source_and_a_valid_name() -> None:
    both = with_change("github.token_env", "GITHUB_TOKEN")
    both["github"]["token_file"] = "/run/secrets/github"
    assert key_paths(problems_of(both)) == ["github"]
    bad_name = with_change("github.token_env", "not a variable")
    assert key_paths(problems_of(bad_name)) == ["github.token_env"]
    no_token = with_change("pipelines.0.registry_auth", {"username_env": "GITHUB_USER"})
    assert key_paths(problems_of(no_token)) == ["pipelines[0].registry_auth"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = textwrap.dedent(
        f"""\
        interval: 30x
        colour: blue
        github:
          repository: owner/homelab
          token: {SECRET}
        clusters:
          integration: {{kubeconfig: ~/.kube/integration.yaml, in_cluster: true}}
          live: {{kubeconfig: ~/.kube/live.yaml}}
        pipelines:
          - name: platform
            artifact: https://ghcr.io/owner/homelab/platform
            stages:
              integration: {{cluster: integration, semver: ">= banana"}}
              live: {{cluster: production}}
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert sorted(key_paths(caught.value.problems)) == sorted(
        [
            "interval",
            "colour",
            "github.token",
            "clusters.integration",
            "pipelines[0].artifact",
            "pipelines[0].stages.integration.semver",
            "pipelines[0].stages.live.cluster",
        ]
    )
    assert SECRET not in str(caught.value)
    for problem in caught.value.problems:
        assert problem in str(caught.value)


def test_a_duplicate_pipeline_name_is_rejected() -> None:
    raw = minimal()
    raw["pipelines"].append(copy.deepcopy(raw["pipelines"][0]))
    raw["pipelines"][1]["source"] = {"name": "apps"}  # only the name is shared
    raw["pipelines"][1]["kustomization"] = {"name": "apps"}
    assert key_paths(problems_of(raw)) == ["pipelines"]


@pytest.mark.parametrize("raw", [None, [], "interval: 30s"])
def test_a_document_that_is_not_a_mapping_is_rejected(raw: Any) -> None:
    assert problems_of(raw)


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "clusters: [unclosed\n"))


def test_a_yaml_syntax_error_does_not_quote_a_secret(tmp_path: Path) -> None:
    # PyYAML shortens long lines around the error mark, so a short secret shows it best.
    secret = "hunter2-token"
    text = f"github:\n  repository: owner/homelab\n  token: '{secret}' oops\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert secret not in str(caught.value)


# --- Secrets come from the environment or a file ---------------------------------------------


def test_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTION_TEST_TOKEN", SECRET)
    config = parse_config(with_change("github.token_env", "PROMOTION_TEST_TOKEN"))
    assert config.github is not None and config.github.token is not None
    assert config.github.token.read() == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in config.github.token.describe()
    monkeypatch.setenv("PROMOTION_TEST_TOKEN", "")
    assert config.github.token.read() is None
    monkeypatch.delenv("PROMOTION_TEST_TOKEN")
    assert config.github.token.read() is None


def test_secret_from_a_file(tmp_path: Path) -> None:
    token_file = write(tmp_path, f"  {SECRET}\n", "token")
    raw = with_change("pipelines.0.registry_auth", {"token_file": str(token_file)})
    auth = parse_config(raw).pipelines[0].registry_auth
    assert auth is not None and auth.username is None
    assert auth.token.read() == SECRET
    assert SECRET not in repr(auth)
    token_file.write_text("\n")
    assert auth.token.read() is None


# --- check-config ----------------------------------------------------------------------------


def test_check_config_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Imported here: the CLI pulls in the whole exporter, the loader's tests need none of it.
    from exporter.cli import main

    path = write(tmp_path, CONTRACT_EXAMPLE)
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{path}: ok"
    assert err == ""


def test_check_config_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from exporter.cli import EXIT_CONFIG_INVALID, main

    raw = with_change("interval", "-1s")
    raw["pipelines"][0]["stages"]["live"]["cluster"] = "production"
    raw["github"]["token"] = SECRET
    path = write(tmp_path, yaml.safe_dump(raw))
    assert main(["check-config", str(path)]) == EXIT_CONFIG_INVALID == 3
    out, err = capsys.readouterr()
    assert out == ""
    for fragment in ("interval", "pipelines[0].stages.live.cluster", "github.token"):
        assert fragment in err
    assert SECRET not in err


# --- Durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1m500ms", 60.5),
        ("1d", 86400),
        ("1w", 604800),
        ("1y", 365 * 86400),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "30x", "-1s", "1.5h", "1m1h", "h", " 30s", "30S"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_credentials_in_the_artifact_url_are_refused() -> None:
    raw = with_change("pipelines.0.artifact", "oci://robot:hunter2@ghcr.io/owner/homelab/platform")
    problems = problems_of(raw)
    assert key_paths(problems) == ["pipelines[0].artifact"]
    assert "hunter2" not in str(problems)


# --- The stable-only flow, per-pipeline GitHub, HelmRelease namespaces, grace polls ----------


def second_pipeline(**changes: Any) -> dict[str, Any]:
    """The minimal config plus an 'apps' pipeline that watches its own objects."""
    raw = minimal()
    apps = copy.deepcopy(raw["pipelines"][0])
    apps.update(name="apps", artifact="oci://ghcr.io/owner/homelab/apps")
    apps.update(source={"name": "apps"}, kustomization={"name": "apps"}, **changes)
    raw["pipelines"].append(apps)
    return raw


def test_a_null_promote_workflow_means_no_tag_workflow() -> None:
    github = parse_config(with_change("github.promote_workflow", None)).github
    assert github is not None
    assert github.promote_workflow is None
    assert github.build_workflow == "build-platform-artifact.yaml"


def test_an_absent_promote_workflow_keeps_the_default() -> None:
    (pipeline,) = parse_config(minimal()).pipelines
    assert pipeline.github is not None
    assert pipeline.github.promote_workflow == "tag-validated-artifact.yaml"


@pytest.mark.parametrize("key", ["build_workflow", "repository"])
def test_null_is_refused_where_it_means_nothing(key: str) -> None:
    assert key_paths(problems_of(with_change(f"github.{key}", None))) == [f"github.{key}"]


def test_without_overrides_a_pipeline_uses_the_top_level_github() -> None:
    config = parse_config(minimal())
    assert config.pipelines[0].github == config.github


def test_a_pipeline_overrides_the_watch_but_not_the_connection() -> None:
    raw = second_pipeline(
        github={
            "repository": "owner/apps",
            "watch_path": "apps/",
            "build_workflow": "build-apps.yaml",
            "promote_workflow": None,
        }
    )
    raw["github"].update(url="https://ghe.example.com/api/v3", token_env="GH_TOKEN", branch="trunk")
    config = parse_config(raw)
    platform, apps = config.pipelines
    assert platform.github == config.github
    assert apps.github == GitHubConfig(
        url="https://ghe.example.com/api/v3",
        repository="owner/apps",
        token=SecretRef(env="GH_TOKEN"),
        branch="trunk",
        watch_path="apps/",
        build_workflow="build-apps.yaml",
        promote_workflow=None,
    )
    assert config.github is not None and config.github.repository == "owner/homelab"


def test_a_pipeline_override_keeps_the_keys_it_does_not_set() -> None:
    apps = parse_config(second_pipeline(github={"watch_path": "apps/"})).pipelines[1]
    assert apps.github is not None
    assert (apps.github.repository, apps.github.watch_path) == ("owner/homelab", "apps/")
    assert apps.github.promote_workflow == "tag-validated-artifact.yaml"


@pytest.mark.parametrize(
    ("github", "expected"),
    [
        ({"branch": "trunk"}, "pipelines[1].github.branch"),
        ({"token_env": "OTHER"}, "pipelines[1].github.token_env"),
        ({"url": "https://example.com"}, "pipelines[1].github.url"),
        ({"repository": "no-owner"}, "pipelines[1].github.repository"),
        ({"build_workflow": None}, "pipelines[1].github.build_workflow"),
        ("owner/apps", "pipelines[1].github"),
    ],
)
def test_bad_pipeline_github_overrides_are_rejected(github: Any, expected: str) -> None:
    assert key_paths(problems_of(second_pipeline(github=github))) == [expected]


def test_a_pipeline_github_needs_the_top_level_section() -> None:
    raw = second_pipeline(github={"repository": "owner/apps"})
    del raw["github"]
    (problem,) = problems_of(raw)
    assert problem.startswith("pipelines[1].github: needs a top-level github section")


def test_without_github_no_pipeline_has_one() -> None:
    raw = minimal()
    del raw["github"]
    assert parse_config(raw).pipelines[0].github is None


def test_null_alert_and_provider_mean_no_dispatch_wiring() -> None:
    raw = with_change("pipelines.0.alert", None)
    raw["pipelines"][0]["provider"] = None
    (pipeline,) = parse_config(raw).pipelines
    assert (pipeline.alert, pipeline.provider) == (None, None)


@pytest.mark.parametrize(("null", "other"), [("alert", "provider"), ("provider", "alert")])
def test_only_one_of_alert_and_provider_null_is_rejected(null: str, other: str) -> None:
    (problem,) = problems_of(with_change(f"pipelines.0.{null}", None))
    assert problem.startswith(f"pipelines[0].{null}: is null but {other} is not")


def test_helm_release_namespaces() -> None:
    (pipeline,) = parse_config(minimal()).pipelines
    assert pipeline.helm_release_namespaces == ()
    raw = with_change("pipelines.0.helm_release_namespaces", ["apps", "kube-system", "apps"])
    (pipeline,) = parse_config(raw).pipelines
    assert pipeline.helm_release_namespaces == ("apps", "kube-system")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("apps", "pipelines[0].helm_release_namespaces"),
        (["apps", "Apps"], "pipelines[0].helm_release_namespaces[1]"),
        (["-apps"], "pipelines[0].helm_release_namespaces[0]"),
        (["apps\n"], "pipelines[0].helm_release_namespaces[0]"),
        (["a" * 64], "pipelines[0].helm_release_namespaces[0]"),
        (["apps.example"], "pipelines[0].helm_release_namespaces[0]"),
        ([3], "pipelines[0].helm_release_namespaces[0]"),
    ],
)
def test_bad_helm_release_namespaces_are_rejected(value: Any, expected: str) -> None:
    path = "pipelines.0.helm_release_namespaces"
    assert key_paths(problems_of(with_change(path, value))) == [expected]


def test_a_63_character_namespace_is_a_label() -> None:
    raw = with_change("pipelines.0.helm_release_namespaces", ["a" * 63])
    assert parse_config(raw).pipelines[0].helm_release_namespaces == ("a" * 63,)


def test_two_pipelines_on_the_default_objects_collide() -> None:
    raw = second_pipeline()
    del raw["pipelines"][1]["source"]
    del raw["pipelines"][1]["kustomization"]
    assert problems_of(raw) == [
        "pipelines[1].stages.integration.source: OCIRepository flux-system/flux-system in "
        "cluster integration is also watched by pipelines[0].stages.integration.source",
        "pipelines[1].stages.integration.kustomization: Kustomization flux-system/platform in "
        "cluster integration is also watched by pipelines[0].stages.integration.kustomization",
        "pipelines[1].stages.live.source: OCIRepository flux-system/flux-system in "
        "cluster live is also watched by pipelines[0].stages.live.source",
        "pipelines[1].stages.live.kustomization: Kustomization flux-system/platform in "
        "cluster live is also watched by pipelines[0].stages.live.kustomization",
    ]


def test_a_stage_override_that_lands_on_another_pipelines_object_collides() -> None:
    raw = second_pipeline()
    raw["pipelines"][1]["stages"]["live"]["kustomization"] = {"name": "platform"}
    assert problems_of(raw) == [
        "pipelines[1].stages.live.kustomization: Kustomization flux-system/platform in "
        "cluster live is also watched by pipelines[0].stages.live.kustomization"
    ]


def test_the_same_object_name_in_another_cluster_or_kind_does_not_collide() -> None:
    raw = second_pipeline(stages={"integration": {"cluster": "integration"}})
    raw["pipelines"][0]["stages"] = {"live": {"cluster": "live"}}
    del raw["pipelines"][1]["source"]
    raw["pipelines"][1]["kustomization"] = {"name": "flux-system"}  # an OCIRepository's name
    assert len(parse_config(raw).pipelines) == 2


def test_grace_polls() -> None:
    assert parse_config(minimal()).grace_polls == 3
    assert parse_config(with_change("grace_polls", 1)).grace_polls == 1
    assert parse_config(with_change("grace_polls", 100)).grace_polls == 100


@pytest.mark.parametrize("value", [-1, 0, 101, "3", 2.5, True, None])
def test_bad_grace_polls_are_rejected(value: Any) -> None:
    assert key_paths(problems_of(with_change("grace_polls", value))) == ["grace_polls"]


def test_new_keys_report_every_problem_at_once() -> None:
    raw = second_pipeline(github={"branch": "x"}, helm_release_namespaces=["Bad"], alert=None)
    raw["grace_polls"] = -2
    del raw["pipelines"][1]["kustomization"]
    assert sorted(key_paths(problems_of(raw))) == sorted(
        [
            "grace_polls",
            "pipelines[1].github.branch",
            "pipelines[1].alert",
            "pipelines[1].helm_release_namespaces[0]",
            "pipelines[1].stages.integration.kustomization",
            "pipelines[1].stages.live.kustomization",
        ]
    )
