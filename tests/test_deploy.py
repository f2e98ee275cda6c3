"""How the exporter ships, each part checked against what it describes.

The manifests are rendered with the real `kubectl kustomize` and validated against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict) and the prometheus-operator CRD schemas
vendored in tests/vendor/. The Dockerfile is read line by line. The wheel is built from what
the Dockerfile copies, installed into a fresh venv and run. The README's tables are compared
with the config loader, the rules, docs/metrics.md and the CLI.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter import cli, kube
from exporter.config import STAGE_NAMES, ConfigError, load_config, parse_config
from exporter.server import parse_listen_address
from exporter.simulator.distribution import free_port
from exporter.snapshot import ErrorReason
from exporter.versions import Constraint, Version
from tests.crds import closed
from tests.processes import spawn, stop_cleanly, wait_ready

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VENDOR = Path(__file__).resolve().parent / "vendor"
README = ROOT / "README.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
CONSOLE_SCRIPTS = PYPROJECT["project"]["scripts"]

# kubectl here is 1.32; kubernetes-validate ships schemas for 1.25 up to 1.37.
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "monitoring"
NON_ROOT_ID = 65532
READ_VERBS = {"get", "list", "watch"}
METRICS_PORT = parse_listen_address(cli.DEFAULT_LISTEN)[1]
CONFIG_FILE = "/etc/promotion-exporter/config.yml"
KUBECONFIG_DIR = "/etc/promotion-exporter/kubeconfigs"
EXPORTER_OVERLAYS = ("base", "overlays/homelab")
RBAC_RENDERS = (*EXPORTER_OVERLAYS, "integration-reader")
MONITORING_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
}
NO_VALUE = "—"  # the README's empty cell


# --- rendering -----------------------------------------------------------------------------


def kustomize(directory: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) renders deploy/; install it"
    result = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize deploy/{directory}:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(name) for name in (*RBAC_RENDERS, "flux")}


def the(objects: list[dict[str, Any]], kind: str, label: str | None = None) -> dict[str, Any]:
    """The one object of that kind (optionally carrying that label key)."""
    found = [
        o
        for o in objects
        if o["kind"] == kind and (label is None or label in o["metadata"].get("labels", {}))
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def exporter_config_map(objects: list[dict[str, Any]]) -> dict[str, Any]:
    volumes = the(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    name = next(v["configMap"]["name"] for v in volumes if "configMap" in v)
    return next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)


def memory_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()
    return int(number) * {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[unit]


# --- the kustomizations --------------------------------------------------------------------


def test_every_kustomization_renders_offline(rendered: dict[str, list[dict[str, Any]]]) -> None:
    expected = {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
        "Deployment",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for overlay in EXPORTER_OVERLAYS:
        objects = rendered[overlay]
        assert {o["kind"] for o in objects} == expected
        namespaced = [o for o in objects if not o["kind"].startswith("Cluster")]
        assert {o["metadata"].get("namespace") for o in namespaced} == {NAMESPACE}
    assert {o["kind"] for o in rendered["flux"]} == {"OCIRepository", "Kustomization"}


@pytest.mark.parametrize("overlay", RBAC_RENDERS)
def test_core_objects_validate_strictly(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    core = [o for o in rendered[overlay] if o["kind"] not in MONITORING_KINDS]
    assert core
    for document in core:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    for document in rendered[overlay]:
        # A CRD's schema leaves metadata open; validate it as a core object's ObjectMeta.
        as_core = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": document["metadata"]}
        kubernetes_validate.validate(as_core, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_a_misspelt_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = copy.deepcopy(the(rendered["base"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((VENDOR / MONITORING_KINDS[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def crd_errors(document: dict[str, Any]) -> list[str]:
    validator = crd_validator(document["kind"])
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
@pytest.mark.parametrize("kind", sorted(MONITORING_KINDS))
def test_monitoring_objects_match_the_vendored_crds(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, kind: str
) -> None:
    document = the(rendered[overlay], kind)
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd_errors(document) == []


def test_crd_validation_rejects_a_misspelt_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    monitor = copy.deepcopy(the(rendered["base"], "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert any("intervall" in error for error in crd_errors(monitor))
    rule = copy.deepcopy(the(rendered["base"], "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    assert crd_errors(rule)


def test_prometheusrule_is_the_generated_one(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # deploy/base holds a copy that `make generate` writes; the overlays must render it.
    generated = ROOT / "rules" / "promotion-prometheusrule.yaml"
    expected = yaml.safe_load(generated.read_text())
    expected["metadata"]["namespace"] = NAMESPACE  # all that kustomize adds
    for overlay in EXPORTER_OVERLAYS:
        assert the(rendered[overlay], "PrometheusRule") == expected


def test_dashboards_are_the_generated_ones(rendered: dict[str, list[dict[str, Any]]]) -> None:
    generated = ROOT / "dashboards" / "promotion-dashboards-configmap.yaml"
    expected = [d for d in yaml.safe_load_all(generated.read_text()) if d]
    assert expected
    for document in expected:
        document["metadata"]["namespace"] = NAMESPACE
    for overlay in EXPORTER_OVERLAYS:
        dashboards = [
            o for o in rendered[overlay] if "grafana_dashboard" in o["metadata"].get("labels", {})
        ]
        assert dashboards == expected


# --- RBAC ----------------------------------------------------------------------------------


def kube_reads() -> set[tuple[str, str]]:
    """(API group, plural) of every kind exporter/kube.py reads."""
    return {
        (kind.group, kind.plural) for kind in vars(kube).values() if isinstance(kind, kube._Kind)
    }


@pytest.mark.parametrize("overlay", RBAC_RENDERS)
def test_cluster_role_reads_only_what_the_exporter_reads(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    role = the(rendered[overlay], "ClusterRole")
    granted: set[tuple[str, str]] = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, "no nonResourceURLs"
        assert set(rule["verbs"]) <= READ_VERBS
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field]
        assert "secrets" not in rule["resources"]
        granted |= {(group, plural) for group in rule["apiGroups"] for plural in rule["resources"]}
    assert len(kube_reads()) >= 6
    assert granted == kube_reads()


@pytest.mark.parametrize("overlay", RBAC_RENDERS)
def test_cluster_role_is_bound_to_the_exporters_service_account(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    account = the(objects, "ServiceAccount")["metadata"]
    binding = the(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": the(objects, "ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]


def test_integration_reader_gets_a_token_and_commits_no_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["integration-reader"]
    token = the(objects, "Secret")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": the(objects, "ServiceAccount")["metadata"]["name"]
    }
    assert "data" not in token
    assert "stringData" not in token


# --- the Deployment ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
def test_deployment_runs_locked_down(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    deployment = the(rendered[overlay], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == the(rendered[overlay], "ServiceAccount")["metadata"]["name"]
    runtime_default = {"type": "RuntimeDefault"}
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_ID,
        "runAsGroup": NON_ROOT_ID,
        "fsGroup": NON_ROOT_ID,
        "seccompProfile": runtime_default,
    }
    assert container(rendered[overlay])["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_ID,
        "runAsGroup": NON_ROOT_ID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": runtime_default,
    }


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
def test_deployment_serves_metrics_and_probes(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    exporter = container(rendered[overlay])
    assert exporter["ports"] == [
        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
    ]
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert exporter["args"][0] == f"--config.file={CONFIG_FILE}"
    resources = exporter["resources"]
    request = memory_bytes(resources["requests"]["memory"])
    limit = memory_bytes(resources["limits"]["memory"])
    # Sized for the exporter's ~52 MB resident set: room to spare, far from a leak's worth.
    assert 64 * 1024**2 <= request <= limit <= 256 * 1024**2


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
def test_deployment_mounts_config_secrets_and_a_writable_tmp(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    config_mount = mounts[CONFIG_FILE]
    assert config_mount["subPath"] == "config.yml"
    config_map = exporter_config_map(objects)["metadata"]["name"]
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map
    kubeconfigs = volumes[mounts[KUBECONFIG_DIR]["name"]]["secret"]
    assert kubeconfigs == {
        "secretName": "promotion-exporter-kubeconfigs",
        "optional": True,
        "defaultMode": 0o440,
    }
    assert all(mount.get("readOnly") for path, mount in mounts.items() if path != "/tmp")
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["medium"] == "Memory"
    token = next(e for e in container(objects)["env"] if e["name"] == "GITHUB_TOKEN")
    assert token["valueFrom"] == {
        "secretKeyRef": {"name": "promotion-exporter-github", "key": "token", "optional": True}
    }


def test_images_are_pinned(rendered: dict[str, list[dict[str, Any]]]) -> None:
    base_image = container(rendered["base"])["image"]
    assert base_image.endswith(f":{VERSION}")
    homelab_image = container(rendered["overlays/homelab"])["image"]
    assert "@sha256:" in homelab_image or re.search(r":\d+\.\d+\.\d+$", homelab_image)


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
def test_rendered_config_loads_and_matches_the_mounts(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    objects = rendered[overlay]
    path = tmp_path / "config.yml"
    path.write_text(exporter_config_map(objects)["data"]["config.yml"])
    config = load_config(path)
    assert config.clusters["live"].in_cluster
    integration = config.clusters["integration"].kubeconfig
    assert integration == Path(KUBECONFIG_DIR) / "integration.yaml"
    env = {e["name"] for e in container(objects)["env"]}
    secrets = [p.registry_auth.token for p in config.pipelines if p.registry_auth]
    if config.github and config.github.token:
        secrets.append(config.github.token)
    assert all(secret.env in env for secret in secrets)
    if overlay == "overlays/homelab":
        assert config.github is not None
        assert secrets


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
def test_service_monitor_scrapes_the_job_the_rules_expect(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    service = the(objects, "Service")
    pod_labels = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = the(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    service_labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert "jobLabel" not in monitor["spec"]
    assert "namespaceSelector" not in monitor["spec"]
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    # Without jobLabel, prometheus-operator names the job after the Service.
    exporter_down = next(
        rule
        for group in the(objects, "PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "PromotionExporterDown"
    )
    assert f'up{{job="{service["metadata"]["name"]}"}}' in exporter_down["expr"]


def test_flux_deploys_the_homelab_overlay_from_an_oci_artifact(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    source = the(rendered["flux"], "OCIRepository")
    deployer = the(rendered["flux"], "Kustomization")
    assert source["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert deployer["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert deployer["spec"]["sourceRef"] == {"kind": "OCIRepository", "name": "promotion-exporter"}
    assert source["metadata"] == {"name": "promotion-exporter", "namespace": "flux-system"}
    assert deployer["metadata"]["namespace"] == "flux-system"
    assert deployer["spec"]["path"] == "./deploy/overlays/homelab"
    assert (ROOT / deployer["spec"]["path"] / "kustomization.yaml").is_file()
    assert deployer["spec"]["prune"] is True
    assert source["spec"]["url"].startswith("oci://")
    constraint = Constraint.parse(source["spec"]["ref"]["semver"])
    assert constraint.admits(Version.parse(VERSION))
    assert not constraint.admits(Version.parse(f"{VERSION}-rc.1"))


# --- the Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        word, _, rest = (pending + stripped).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def arguments(stage: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for instruction, rest in stage if instruction == word]


def key_values(stage: list[tuple[str, str]], word: str) -> dict[str, str]:
    pairs = [item for rest in arguments(stage, word) for item in shlex.split(rest)]
    return dict(pair.split("=", 1) for pair in pairs)


def copied_sources() -> list[str]:
    """The build-context paths the Dockerfile COPYs (COPY --from copies between stages)."""
    sources = []
    for rest in arguments([i for stage in stages() for i in stage], "COPY"):
        parts = rest.split()
        if not parts[0].startswith("--from="):
            sources += parts[:-1]
    return sources


def dockerignore_keeps(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    kept = True
    for raw_line in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line.removeprefix("!").rstrip("/")
        loose = pattern.removeprefix("**/")
        if any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], loose)
            for p in prefixes
        ):
            kept = line.startswith("!")
    return kept


def test_dockerfile_builds_a_wheel_then_installs_it_into_a_venv() -> None:
    builder, final = stages()
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert final[0] == ("FROM", "python:3.11-slim")
    assert any("pip wheel --no-deps" in run for run in arguments(builder, "RUN"))
    install = " ".join(arguments(final, "RUN"))
    assert "from=builder" in install
    assert "python -m venv /opt/venv" in install
    assert "/opt/venv/bin/pip install" in install


def test_dockerfile_copies_files_that_exist_and_dockerignore_keeps() -> None:
    sources = copied_sources()
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        shipped = [f for f in files if "__pycache__" not in f.parts]
        assert shipped
        for file in shipped:
            assert dockerignore_keeps(file.relative_to(ROOT).as_posix()), file
    for left_out in (".venv/bin/python", "tests/test_deploy.py", ".git/HEAD", "deploy/base"):
        assert not dockerignore_keeps(left_out), left_out


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    final = stages()[-1]
    (user,) = arguments(final, "USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid == gid == NON_ROOT_ID
    (entrypoint,) = arguments(final, "ENTRYPOINT")
    binary = Path(*json.loads(entrypoint))
    assert binary.parent == Path("/opt/venv/bin")
    assert binary.name in CONSOLE_SCRIPTS
    (command,) = arguments(final, "CMD")
    assert json.loads(command) == [f"--config.file={CONFIG_FILE}"]
    assert arguments(final, "EXPOSE") == [str(METRICS_PORT)]
    assert key_values(final, "ENV")["PYTHONDONTWRITEBYTECODE"] == "1"


def test_dockerfile_labels_name_the_project_and_its_version() -> None:
    final = stages()[-1]
    labels = key_values(final, "LABEL")
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert key_values(final, "ARG")["VERSION"] == VERSION


# --- the wheel, installed and run ----------------------------------------------------------


def run(command: list[str | Path], timeout: float) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"


@contextmanager
def refusing_ports(count: int) -> Iterator[list[int]]:
    """Ports bound but never listening: connecting is refused, and nothing else can take them."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        yield [sock.getsockname()[1] for sock in sockets]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def build_and_install(workdir: Path) -> Path:
    """The console script of a fresh venv holding the wheel built from what the image copies."""
    source = workdir / "src"
    source.mkdir()
    for name in copied_sources():
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = workdir / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, source], 180)
    (wheel,) = dist.glob("*.whl")
    venv = workdir / "venv"
    run([sys.executable, "-m", "venv", venv], 120)
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], 600)
    (script,) = CONSOLE_SCRIPTS
    return venv / "bin" / script


def unreachable_config(workdir: Path, registry: int, api: int, github: int) -> Path:
    kubeconfig = workdir / "integration.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "integration",
                        "cluster": {
                            "server": f"https://127.0.0.1:{api}",
                            # Inline, as in a real kubeconfig: the client copies it to TMPDIR.
                            "certificate-authority-data": "bm90IGEgcmVhbCBjZXJ0aWZpY2F0ZQ==",
                        },
                    }
                ],
                "users": [{"name": "reader", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "integration", "context": {"cluster": "integration", "user": "reader"}}
                ],
                "current-context": "integration",
            }
        )
    )
    config = workdir / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "interval": "30s",
                "timeout": "2s",
                "github": {"url": f"http://127.0.0.1:{github}", "repository": "owner/homelab"},
                "clusters": {"integration": {"kubeconfig": str(kubeconfig)}},
                "pipelines": [
                    {
                        "name": "platform",
                        "artifact": f"oci://127.0.0.1:{registry}/homelab/platform",
                        "plain_http": True,
                        "stages": {"integration": {"cluster": "integration"}},
                    }
                ],
            }
        )
    )
    return config


def files_under(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


def test_the_wheel_installs_into_a_fresh_venv_and_serves(tmp_path: Path) -> None:
    script = build_and_install(tmp_path)
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(temp)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # as the image sets it
    installed = files_under(script.parent.parent)
    log = tmp_path / "exporter.log"
    with refusing_ports(3) as (registry, api, github):
        config = unreachable_config(tmp_path, registry, api, github)
        port = free_port()
        command = [script, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
        process = spawn(command, log, env)
        try:
            wait_ready(process, f"http://127.0.0.1:{port}/readyz", log, "the exporter", 30)
            health = get(f"http://127.0.0.1:{port}/healthz")
            status, exposition = get(f"http://127.0.0.1:{port}/metrics")
            inline_certificate_copies = list(temp.iterdir())
        finally:
            stop_cleanly(process, log, "the exporter", timeout=15)
    assert health == (200, "ok\n")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    up = {
        (s.labels["kind"], s.labels["name"]): s.value
        for s in families["promotion_source_up"].samples
    }
    assert up == {
        ("registry", f"127.0.0.1:{registry}/homelab/platform"): 0,
        ("cluster", "integration"): 0,
        ("github", "owner/homelab"): 0,
    }
    errors = {
        (s.labels["kind"], s.labels["reason"]): s.value
        for s in families["promotion_source_errors"].samples
        if s.name == "promotion_source_errors_total"
    }
    assert errors["cluster", "unreachable"] >= 1
    assert "cluster integration: poll failed (unreachable)" in log.read_text()
    # Why the Deployment mounts an emptyDir at /tmp; and nothing else was written anywhere.
    assert inline_certificate_copies
    assert files_under(script.parent.parent) == installed
    assert not any(home.iterdir())


# --- README and examples -------------------------------------------------------------------


def readme() -> str:
    return README.read_text()


def readme_block(name: str) -> list[str]:
    text = readme()
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    assert begin in text and end in text, f"README lacks the {name} markers"
    return text.split(begin, 1)[1].split(end, 1)[0].rstrip("\n").split("\n")


def table_rows(lines: list[str]) -> list[list[str]]:
    """The body rows of a Markdown table, as stripped cells."""
    assert lines[1].startswith("|---")
    return [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in lines[2:]]


def test_readme_starts_with_make_demo_and_make_test() -> None:
    first_block = readme().split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines() == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_alert_catalogue_is_the_rules() -> None:
    rules = [
        rule
        for group in yaml.safe_load((ROOT / "rules" / "promotion.rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    rows = table_rows(readme_block("alerts"))
    assert len(rows) == len(rules)
    headings = {
        line.removeprefix("## ")
        for line in (ROOT / "docs" / "runbook.md").read_text().splitlines()
        if line.startswith("## ")
    }
    for row, rule in zip(rows, rules, strict=True):
        alert = rule["alert"]
        assert row[0] == f"[{alert}](docs/runbook.md#{alert.lower()})"
        assert alert in headings
        assert row[1] == rule["labels"]["severity"]
        assert row[3] == rule.get("for", NO_VALUE), alert
        node = re.search(r'tree="(\w+)", node="(\w+)"', rule["expr"])
        assert row[4] == (f"`{node[1]}` / `{node[2]}`" if node else NO_VALUE), alert


def test_readme_links_resolve() -> None:
    links = re.findall(r"\]\(([^)]+)\)", readme())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert "examples/alertmanager.yml" in local
    for link in local:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.MULTILINE)
            assert anchor in {heading.lower() for heading in headings}, link


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(
        action.choices
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )


def test_readme_names_every_command() -> None:
    commands = subcommands(cli.build_parser())
    assert {"check-config", "diagnose", "generate", "demo"} <= set(commands)
    for command in commands:
        assert f"`promotion-exporter {command}" in readme(), command
    for target in subcommands(commands["generate"]):
        assert f"`promotion-exporter generate {target}" in readme(), target


def test_readme_troubleshooting_names_every_error_reason() -> None:
    lines = readme().split("## Troubleshooting the exporter", 1)[1].split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| `reason`"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    reasons = [row[0] for row in table_rows(lines[start:end])]
    assert sorted(reasons) == sorted(f"`{reason.value}`" for reason in ErrorReason)


# The config reference: every documented key is accepted by the loader, every key the loader
# accepts is documented, and every literal default is what the loader does without the key.

PLACEHOLDERS = {"<name>": "integration", "<stage>": "integration"}
REFUSED_INLINE_SECRETS = {"token", "username"}  # accepted only to be refused with a hint


def reference() -> list[tuple[list[str], str]]:
    """(key segments, default cell) of each row of the README's config reference."""
    rows = table_rows(readme_block("config-reference"))
    return [(row[0].strip("`").split("."), row[2]) for row in rows]


def navigate(raw: dict[str, Any], segments: list[str]) -> dict[str, Any]:
    """The mapping the segments lead to in raw, made on the way where it is missing."""
    node = raw
    for segment in segments:
        key = PLACEHOLDERS.get(segment, segment)
        if key.endswith("[]"):
            items = node.get(key[:-2])
            if not (isinstance(items, list) and items and isinstance(items[0], dict)):
                items = node[key[:-2]] = [{}]
            node = items[0]
        else:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
    return node


def loader_path(segments: list[str]) -> str:
    """How the loader names that mapping in its problems."""
    pieces = []
    for segment in segments:
        key = PLACEHOLDERS.get(segment, segment)
        pieces.append(f"{key[:-2]}[0]" if key.endswith("[]") else key)
    return ".".join(pieces)


def accepted_keys(base: dict[str, Any], parent: list[str]) -> set[str] | None:
    """The keys the loader accepts in that mapping, read from its unknown-key problem; None
    when the loader does not read it as a mapping of fixed keys."""
    raw = copy.deepcopy(base)
    navigate(raw, parent)["zz_probe"] = 1
    try:
        parse_config(raw)
    except ConfigError as error:
        problems = error.problems
    else:
        return None
    prefix = ".".join(filter(None, (loader_path(parent), "zz_probe: unknown key (allowed: ")))
    for problem in problems:
        if problem.startswith(prefix):
            return set(problem.removeprefix(prefix).removesuffix(")").split(", "))
    return None


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def test_every_documented_key_is_accepted_by_the_loader() -> None:
    base = example("config.yml")
    for segments, _default in reference():
        parent, leaf = segments[:-1], segments[-1]
        if leaf in PLACEHOLDERS:
            assert parent == ["clusters"]  # cluster names are free
            continue
        accepted = accepted_keys(base, parent)
        assert accepted is not None, ".".join(segments)
        assert leaf.removesuffix("[]") in accepted, ".".join(segments)


def as_documented(segments: tuple[str, ...]) -> tuple[str, ...]:
    """A stage's keys are documented once, under <stage>."""
    if len(segments) >= 2 and segments[-2] == "stages" and segments[-1] in STAGE_NAMES:
        return (*segments[:-1], "<stage>")
    return segments


def test_every_key_the_loader_accepts_is_documented() -> None:
    base = example("config.yml")
    keys = [segments for segments, _default in reference()]
    documented: dict[tuple[str, ...], set[str]] = {}
    for segments in keys:
        documented.setdefault(tuple(segments[:-1]), set()).add(segments[-1].removesuffix("[]"))
    containers = {tuple(s) for s in keys} | {(*s[:-1], f"{s[-1]}[]") for s in keys} | {()}
    probed = 0
    for container_segments in containers:
        accepted = accepted_keys(base, list(container_segments))
        if accepted is None:
            continue
        probed += 1
        listed = documented.get(as_documented(container_segments), set())
        missing = accepted - REFUSED_INLINE_SECRETS - listed
        assert not missing, f"{'.'.join(container_segments) or 'top level'}: {missing}"
    assert probed >= 12
    assert "`token:` or `username:` is refused" in readme()


def literal_defaults(segments: list[str], cell: str) -> list[tuple[list[str], Any]]:
    """The documented defaults of a row: `value`, or `value` for <stage>, ...; none when the
    default is not a literal (required, none, the pipeline's ...)."""
    per_stage = re.findall(r"`([^`]+)` for (\w+)", cell)
    if per_stage:
        return [
            ([stage if s == "<stage>" else s for s in segments], _literal(value))
            for value, stage in per_stage
        ]
    single = re.fullmatch(r"`([^`]+)`", cell)
    return [(segments, _literal(single[1]))] if single else []


def _literal(text: str) -> Any:
    # YAML for mappings, lists, whole numbers and the three keywords; anything else
    # (">= 0.0.0") is a string.
    keyword = text in {"true", "false", "null"} or text.isdigit()
    return yaml.safe_load(text) if text[:1] in "{[" or keyword else text


def test_documented_defaults_are_what_the_loader_does() -> None:
    base = example("config.minimal.yml")
    base["github"] = {"repository": "your-github-user/homelab"}
    checked = 0
    for segments, cell in reference():
        for path, value in literal_defaults(segments, cell):
            with_default, without = copy.deepcopy(base), copy.deepcopy(base)
            navigate(with_default, path[:-1])[path[-1]] = value
            navigate(without, path[:-1]).pop(path[-1], None)
            assert parse_config(with_default) == parse_config(without), ".".join(path)
            checked += 1
    assert checked >= 30


def test_examples_load_and_show_every_documented_key() -> None:
    names = (
        "config.yml",
        "config.minimal.yml",
        "config.stable-only.yml",
        "config.commit-status.yml",
    )
    for name in names:
        load_config(ROOT / "examples" / name)
    full = example("config.yml")
    text = (ROOT / "examples" / "config.yml").read_text()
    for segments, _default in reference():
        leaf = segments[-1].removesuffix("[]")
        if leaf in PLACEHOLDERS:
            continue
        holders = [
            navigate(copy.deepcopy(full), [stage if s == "<stage>" else s for s in segments[:-1]])
            for stage in STAGE_NAMES
        ]
        # Alternatives that cannot be set together (token_file, in_cluster) are comments.
        assert any(leaf in holder for holder in holders) or f"# or: {leaf}:" in text, leaf


def test_readme_minimal_config_is_the_example() -> None:
    section = readme().split("## Configuration", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == example("config.minimal.yml")
