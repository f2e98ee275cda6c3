"""The manifests in deploy/, rendered with the real `kubectl kustomize` and validated against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict) and the prometheus-operator CRD schemas
vendored in tests/vendor/: the kustomizations, RBAC and the Deployment."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter import cli, kube
from exporter.config import load_config
from exporter.server import parse_listen_address
from exporter.versions import Constraint, Version
from tests.crds import closed

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VENDOR = Path(__file__).resolve().parent / "vendor"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]

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
