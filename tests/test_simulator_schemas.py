"""Every object the simulated clusters serve, checked against the upstream CRD of its
apiVersion and kind (vendored in tests/vendor, see its README), with unknown fields rejected
as the apiserver's strict field validation rejects them.

The objects come from playing every scenario through the fake apiserver's own request
handler, in every version it serves them, so what is checked is what the exporter reads.
The registry is left out: only the manifest digest of a push reaches a cluster.
CEL rules (x-kubernetes-validations) are not evaluated; none touches a field the simulator
writes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from exporter.simulator import flux_objects as flux
from exporter.simulator import pipeline
from exporter.simulator.githubapi import FakeGitHub
from exporter.simulator.kubeapi import CANARY_CHECKER, FLUX_2_5, FakeKubeAPI
from exporter.simulator.lab import ARTIFACT_REPOSITORY, GITHUB_REPOSITORY
from exporter.simulator.scenarios import SCENARIOS, Scenario, play
from tests.crds import closed

END = 1_793_534_400.0  # 2026-11-02T12:00:00Z, as in tests/test_scenarios.py
VENDOR = Path(__file__).resolve().parent / "vendor"
CRD_FILES = {
    ("source.toolkit.fluxcd.io", "OCIRepository"): "source.toolkit.fluxcd.io_ocirepositories.yaml",
    ("kustomize.toolkit.fluxcd.io", "Kustomization"): (
        "kustomize.toolkit.fluxcd.io_kustomizations.yaml"
    ),
    ("notification.toolkit.fluxcd.io", "Alert"): "notification.toolkit.fluxcd.io_alerts.yaml",
    ("notification.toolkit.fluxcd.io", "Provider"): "notification.toolkit.fluxcd.io_providers.yaml",
    ("helm.toolkit.fluxcd.io", "HelmRelease"): "helm.toolkit.fluxcd.io_helmreleases.yaml",
    ("canaries.flanksource.com", "Canary"): "canaries.flanksource.com_canaries.yaml",
}
# What the simulator must have served for this module to have checked anything.
EXPECTED_SERVED = {
    "source.toolkit.fluxcd.io/v1/OCIRepository",
    "source.toolkit.fluxcd.io/v1beta2/OCIRepository",
    "kustomize.toolkit.fluxcd.io/v1/Kustomization",
    "notification.toolkit.fluxcd.io/v1beta3/Alert",
    "notification.toolkit.fluxcd.io/v1beta3/Provider",
    "helm.toolkit.fluxcd.io/v2/HelmRelease",
    "canaries.flanksource.com/v1/Canary",
}
# k8s.io/apimachinery ObjectMeta's JSON fields: a CRD schema leaves metadata to it.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the Canary CRD is 400 kB


@dataclass(frozen=True)
class Served:
    """One object as a fake apiserver answered a list request for it."""

    origin: str  # scenario and cluster, for the failure message
    body: dict[str, Any]

    @property
    def type_name(self) -> str:
        return f"{self.body['apiVersion']}/{self.body['kind']}"


@cache
def validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    group, _, version = api_version.rpartition("/")
    crd = yaml.load((VENDOR / CRD_FILES[group, kind]).read_text(), Loader=_LOADER)
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind)
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version and v["served"])
    return jsonschema.Draft7Validator(closed(served["schema"]["openAPIV3Schema"]))


def schema_errors(body: dict[str, Any]) -> list[str]:
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(body["apiVersion"], body["kind"]).iter_errors(body)
    ]
    unknown_meta = sorted(set(body.get("metadata", {})) - OBJECT_META_FIELDS)
    errors += [f"metadata.{field}: not an ObjectMeta field" for field in unknown_meta]
    return errors


def _get(api: FakeKubeAPI, path: str) -> dict[str, Any]:
    reply = api.handle("GET", path, f"Bearer {api.token}")
    assert reply.status == 200, (path, reply.body)
    return reply.body


def served_objects(api: FakeKubeAPI, origin: str) -> Iterator[Served]:
    """Walk discovery as a client would and list every resource in every served version."""
    for group in _get(api, "/apis")["groups"]:
        for version in group["versions"]:
            group_version = version["groupVersion"]
            for resource in _get(api, f"/apis/{group_version}")["resources"]:
                if "/" in resource["name"]:
                    continue  # the status subresource
                listing = _get(api, f"/apis/{group_version}/{resource['name']}")
                for item in listing["items"]:
                    yield Served(origin, item)


def _push(registry_url: str, repository: str, tag: str, **artifact: Any) -> str:
    # The manifest digest is all the clusters see of a push; its bytes do not matter here.
    return flux.sha256_of(f"{registry_url}/{repository}:{tag} {sorted(artifact.items())}")


def _tag(registry_url: str, repository: str, existing_ref: str, new_tag: str, **_: Any) -> str:
    return existing_ref  # the pipeline tags by digest, which a re-tag keeps


def _play(scenario: Scenario, legacy_live: bool = False) -> list[Served]:
    """The scenario as tests/test_scenarios.py plays it, but with no server started: the
    fake apiservers are asked through their request handler, the registry is skipped."""
    clusters = {"integration": FakeKubeAPI(), "live": FakeKubeAPI()}
    if legacy_live:
        clusters["live"].set_resources((*FLUX_2_5, *CANARY_CHECKER))
    sim = pipeline.PipelineSimulator(
        registry_url="http://127.0.0.1:1",
        repository=ARTIFACT_REPOSITORY,
        integration=clusters["integration"],
        live=clusters["live"],
        github=FakeGitHub(GITHUB_REPOSITORY),
        start=END - 3 * 86400,
        flow=scenario.flow,
        provider_type=scenario.provider_type,
    )
    sim.stages["live"].legacy_flux = legacy_live
    play(sim, scenario, END)
    suffix = " (Flux 2.5 live)" if legacy_live else ""
    return [
        obj
        for name, api in clusters.items()
        for obj in served_objects(api, f"{scenario.name}/{name}{suffix}")
    ]


@pytest.fixture(scope="module")
def served() -> Iterator[list[Served]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "push_flux_artifact", _push)
        patch.setattr(pipeline, "tag_artifact", _tag)
        objects = [obj for scenario in SCENARIOS for obj in _play(scenario)]
        yield objects + _play(SCENARIOS[0], legacy_live=True)


def test_every_kind_and_version_the_simulator_serves_was_checked(served: list[Served]) -> None:
    assert {obj.type_name for obj in served} >= EXPECTED_SERVED


def test_every_served_object_matches_its_upstream_crd(served: list[Served]) -> None:
    failures: dict[str, list[str]] = {}
    for obj in served:
        for error in schema_errors(obj.body):
            failures.setdefault(f"{obj.type_name}: {error}", []).append(obj.origin)
    report = {failure: origins[:3] for failure, origins in failures.items()}
    assert not report, json.dumps(report, indent=1)


def _first(served: list[Served], type_name: str) -> dict[str, Any]:
    return copy.deepcopy(next(obj.body for obj in served if obj.type_name == type_name))


@pytest.mark.parametrize(
    ("type_name", "path", "misspelt"),
    [
        ("source.toolkit.fluxcd.io/v1/OCIRepository", ("spec", "ref"), "semvr"),
        ("source.toolkit.fluxcd.io/v1beta2/OCIRepository", ("status", "artifact"), "digets"),
        ("kustomize.toolkit.fluxcd.io/v1/Kustomization", ("spec", "sourceRef"), "nmae"),
        ("notification.toolkit.fluxcd.io/v1beta3/Alert", ("spec",), "inclusionlist"),
        ("notification.toolkit.fluxcd.io/v1beta3/Provider", ("spec",), "adress"),
        ("helm.toolkit.fluxcd.io/v2/HelmRelease", ("spec", "chart", "spec"), "verison"),
        ("canaries.flanksource.com/v1/Canary", ("status",), "lastChecked"),
        ("canaries.flanksource.com/v1/Canary", ("metadata",), "annotation"),
    ],
)
def test_a_misspelt_field_is_rejected(
    served: list[Served], type_name: str, path: tuple[str, ...], misspelt: str
) -> None:
    body = _first(served, type_name)
    assert schema_errors(body) == []
    target = body
    for key in path:
        target = target[key]
    target[misspelt] = "x"
    assert any(misspelt in error for error in schema_errors(body)), schema_errors(body)


def test_a_wrongly_typed_field_is_rejected(served: list[Served]) -> None:
    body = _first(served, "kustomize.toolkit.fluxcd.io/v1/Kustomization")
    body["status"]["observedGeneration"] = "1"
    assert any("observedGeneration" in error for error in schema_errors(body))


def test_a_check_status_entry_is_closed_too(served: list[Served]) -> None:
    body = _first(served, "canaries.flanksource.com/v1/Canary")
    entry = next(iter(body["status"]["checkStatus"].values()))
    entry["uptime1H"] = "60/60 (100.0%)"
    assert any("uptime1H" in error for error in schema_errors(body))


@pytest.mark.parametrize(
    "body",
    [
        flux.oci_repository(semver=None, digest=flux.sha256_of("pinned")),
        flux.oci_repository(semver=">= 0.0.0", semver_filter=r"^\d+\.\d+\.\d+$"),
        flux.oci_repository(
            api_version=flux.OCI_REPOSITORY_V1BETA2,
            semver=None,
            tag="validated-abc1234",
            ready=False,
            reason="AuthenticationFailed",
            revision=flux.flux_revision("0.3.4"),
            suspend=True,
        ),
        flux.kustomization(
            ready="Unknown",
            last_applied_revision=flux.flux_revision("0.3.4"),
            last_applied_origin_revision=flux.git_revision("a" * 40),
            history=[flux.history_entry(flux.flux_revision("0.3.4"), origin_revision="x")],
            suspend=True,
        ),
        flux.alert(event_metadata={"env": "integration"}, exclusion_list=(".*",), suspend=True),
        flux.provider(provider_type="github", address=None, secret_name=None, suspend=True),
    ],
    ids=["digest-ref", "semver-filter", "v1beta2-failing", "kustomization", "alert", "provider"],
)
def test_builder_variations_no_scenario_plays(body: dict[str, Any]) -> None:
    assert schema_errors(body) == []
