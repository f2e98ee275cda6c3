"""The Kubernetes source: pure parsers on real-shaped objects, and the official client against
fake apiservers on 127.0.0.1."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import urllib3
import yaml
from kubernetes.client import Configuration
from kubernetes.client.exceptions import ApiException

from exporter.config import ClusterConfig
from exporter.kube import (
    KubeClient,
    api_error,
    canary_interval,
    check_health,
    connection_error,
    go_duration,
    missing_from_not_found,
    parse_alert,
    parse_canary,
    parse_helm_release,
    parse_kustomization,
    parse_oci_repository,
    parse_provider,
    parse_uptime,
    schedule_period,
)
from exporter.simulator import flux_objects as fo
from exporter.simulator.kubeapi import (
    CANARY_CHECKER,
    FLUX_2_5,
    FLUX_2_6,
    FLUX_2_8,
    FakeKubeAPI,
)
from exporter.simulator.lab import Lab
from exporter.simulator.scenarios import SCENARIOS_BY_NAME, play
from exporter.snapshot import (
    CanaryCheck,
    ClusterData,
    ClusterWants,
    Condition,
    ErrorReason,
    EventSource,
    HelmReleaseStatus,
    HistoryEntry,
    MalformedError,
    Missing,
    ObjectRef,
    SourceError,
    parse_timestamp,
)
from tests.fixtures.kube import KubeAPIFactory, RunningKubeAPI

DIGEST = "sha256:9f3b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"
REVISION = f"0.3.5-rc.1@{DIGEST}"
ORIGIN_REVISION = "main@sha1:4b825dc642cb6eb9a060e54bf8d69288fbee4904"
SOURCE = ObjectRef("flux-system", "flux-system")
PLATFORM = ObjectRef("flux-system", "platform")
CANARY = ObjectRef("monitoring", "platform-validation")
ALERT = ObjectRef("flux-system", "validation-success")
PROVIDER = ObjectRef("flux-system", "github-dispatch")
EVERYTHING = ClusterWants(
    oci_repositories=frozenset({SOURCE}),
    kustomizations=frozenset({PLATFORM}),
    canaries=frozenset({CANARY}),
    alerts=frozenset({ALERT}),
    providers=frozenset({PROVIDER}),
)
KUBE_API_ID = "a1b2c3d4-0000-4000-8000-000000000001"
FLUX_PODS_ID = "a1b2c3d4-0000-4000-8000-000000000002"

# --- real-shaped objects, written out as the controllers serialise them ---------------------

OCI_REPOSITORY_V1 = {
    "apiVersion": "source.toolkit.fluxcd.io/v1",
    "kind": "OCIRepository",
    "metadata": {
        "name": "flux-system",
        "namespace": "flux-system",
        "generation": 3,
        "resourceVersion": "81234",
        "finalizers": ["finalizers.fluxcd.io"],
    },
    "spec": {
        "interval": "1m",
        "provider": "generic",
        "timeout": "60s",
        "url": "oci://ghcr.io/owner/homelab/platform",
        "ref": {"semver": ">= 0.0.0-0", "semverFilter": ".*-rc.*"},
    },
    "status": {
        "observedGeneration": 3,
        "url": "http://source-controller.flux-system.svc.cluster.local./ocirepository/"
        "flux-system/flux-system/7d1c.tar.gz",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "observedGeneration": 3,
                "lastTransitionTime": "2025-06-02T09:30:00Z",
                "reason": "Succeeded",
                "message": f"stored artifact for revision '{REVISION}'",
            },
            {
                "type": "ArtifactInStorage",
                "status": "True",
                "observedGeneration": 3,
                "lastTransitionTime": "2025-06-02T09:30:00Z",
                "reason": "Succeeded",
                "message": f"stored artifact for revision '{REVISION}'",
            },
        ],
        "artifact": {
            "digest": "sha256:7d1c0000000000000000000000000000000000000000000000000000000000aa",
            "lastUpdateTime": "2025-06-02T09:29:58Z",
            "path": "ocirepository/flux-system/flux-system/7d1c.tar.gz",
            "revision": REVISION,
            "size": 48213,
            "url": "http://source-controller.flux-system.svc.cluster.local./ocirepository/"
            "flux-system/flux-system/7d1c.tar.gz",
            "metadata": {
                "org.opencontainers.image.created": "2025-06-02T09:20:11Z",
                "org.opencontainers.image.revision": ORIGIN_REVISION,
                "org.opencontainers.image.source": "https://github.com/owner/homelab",
            },
        },
    },
}

KUSTOMIZATION_WITH_HISTORY = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": "platform", "namespace": "flux-system", "generation": 2},
    "spec": {
        "interval": "10m",
        "path": "./",
        "prune": True,
        "sourceRef": {"kind": "OCIRepository", "name": "flux-system"},
    },
    "status": {
        "observedGeneration": 2,
        "lastAppliedRevision": "0.3.4@sha256:1111111111111111111111111111111111111111111111111111"
        "111111111111",
        "lastAttemptedRevision": REVISION,
        "lastAppliedOriginRevision": ORIGIN_REVISION,
        "conditions": [
            {
                "type": "Reconciling",
                "status": "True",
                "observedGeneration": 2,
                "lastTransitionTime": "2025-06-02T09:31:00Z",
                "reason": "ProgressingWithRetry",
                "message": "Detecting drift for revision 0.3.5-rc.1",
            },
            {
                "type": "Ready",
                "status": "False",
                "observedGeneration": 2,
                "lastTransitionTime": "2025-06-02T09:36:00Z",
                "reason": "HealthCheckFailed",
                "message": "health check failed after 5m0s: timeout waiting for: "
                "[Deployment/apps/podinfo status: 'InProgress']",
            },
        ],
        "history": [
            {
                "digest": "sha256:aaaa000000000000000000000000000000000000000000000000000000000001",
                "firstReconciled": "2025-06-02T09:31:00Z",
                "lastReconciled": "2025-06-02T09:36:00Z",
                "lastReconciledDuration": "5m0.2s",
                "lastReconciledStatus": "HealthCheckFailed",
                "totalReconciliations": 2,
                "metadata": {
                    "revision": REVISION,
                    "originRevision": ORIGIN_REVISION,
                },
            },
            {
                "digest": "sha256:aaaa000000000000000000000000000000000000000000000000000000000002",
                "firstReconciled": "2025-06-01T18:00:00Z",
                "lastReconciled": "2025-06-02T09:20:00Z",
                "lastReconciledDuration": "2.4s",
                "lastReconciledStatus": "ReconciliationSucceeded",
                "totalReconciliations": 93,
                "metadata": {
                    "revision": "0.3.4@sha256:1111111111111111111111111111111111111111111"
                    "111111111111111111111"
                },
            },
        ],
    },
}

CANARY_OBJECT = {
    "apiVersion": "canaries.flanksource.com/v1",
    "kind": "Canary",
    "metadata": {"name": "platform-validation", "namespace": "monitoring", "generation": 1},
    "spec": {
        "schedule": "@every 1m",
        "http": [
            {
                "name": "kubernetes-api",
                "url": "https://kubernetes.default.svc/healthz",
                "responseCodes": [200, 401],
            }
        ],
        "kubernetes": [
            {
                "name": "flux-pods-healthy",
                "kind": "Pod",
                "ready": True,
                "namespaceSelector": {"name": "flux-system"},
            }
        ],
    },
    "status": {
        "persistedID": "0f0e0d0c-0000-4000-8000-00000000000a",
        "observedGeneration": 1,
        "status": "Failed",
        "errorMessage": "pods not ready: source-controller-5d9c",
        "lastCheck": "2025-06-02T09:40:00Z",
        "lastTransitionedTime": "2025-06-02T09:35:00Z",
        "uptime1h": "70/78 (89.7%)",
        "latency1h": "21ms",
        "checks": {"kubernetes-api": KUBE_API_ID, "flux-pods-healthy": FLUX_PODS_ID},
        "checkStatus": {
            KUBE_API_ID: {"uptime1h": "60/60 (100.0%)", "latency1h": "rolling1h=12ms"},
            FLUX_PODS_ID: {
                "uptime1h": "10/18 (55.6%)",
                "latency1h": "rolling1h=21ms",
                "lastTransitionedTime": "2025-06-02T09:35:00Z",
            },
        },
    },
}


# --- pure parsers ---------------------------------------------------------------------------


def test_oci_repository_v1_is_parsed_field_by_field() -> None:
    data = parse_oci_repository(OCI_REPOSITORY_V1)

    assert data.api_version == "source.toolkit.fluxcd.io/v1"
    assert data.url == "oci://ghcr.io/owner/homelab/platform"
    assert (data.ref_semver, data.ref_semver_filter) == (">= 0.0.0-0", ".*-rc.*")
    assert (data.ref_tag, data.ref_digest) == (None, None)
    assert not data.suspended
    assert data.ready == Condition(
        "Ready",
        "True",
        "Succeeded",
        f"stored artifact for revision '{REVISION}'",
    )
    assert data.artifact_revision == REVISION
    assert data.artifact_last_update == parse_timestamp("2025-06-02T09:29:58Z")


def test_failing_oci_repository_keeps_its_previous_artifact() -> None:
    raw = fo.oci_repository(ready=False, revision=REVISION, semver=">= 9.0.0")

    data = parse_oci_repository(raw)

    assert data.ready is not None and not data.ready.is_true
    assert data.ready.reason == "ReadOperationFailed"
    assert "no match found for semver: >= 9.0.0" in data.ready.message
    assert data.artifact_revision == REVISION


def test_oci_repository_before_its_first_reconcile_is_malformed_not_failing() -> None:
    # Without a status nothing can be said about readiness or the artifact: the object's facts
    # are unknown (the reader records it as None), never "not ready".
    raw = {
        k: v
        for k, v in fo.oci_repository(digest=DIGEST, semver=None, suspend=True).items()
        if k != "status"
    }

    with pytest.raises(MalformedError, match="has no status"):
        parse_oci_repository(raw)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda raw: raw["status"].update(conditions="Ready"), "conditions is not a list"),
        (lambda raw: raw.update(status="ok"), "status is not an object"),
        (lambda raw: raw["status"].update(artifact={"revision": "0.3.4"}), "revision is not"),
    ],
)
def test_malformed_oci_repository_status_is_refused(change: Any, problem: str) -> None:
    raw = copy.deepcopy(fo.oci_repository(digest=DIGEST, semver=None))
    change(raw)

    with pytest.raises(MalformedError, match=problem):
        parse_oci_repository(raw)


def test_kustomization_history_matches_on_metadata_revision_not_its_digest() -> None:
    data = parse_kustomization(KUSTOMIZATION_WITH_HISTORY)

    assert data.last_applied_revision.startswith("0.3.4@")
    assert data.ready is not None and data.ready.reason == "HealthCheckFailed"
    assert data.history[0] == HistoryEntry(
        revision=REVISION,
        first_reconciled=parse_timestamp("2025-06-02T09:31:00Z"),
        last_reconciled=parse_timestamp("2025-06-02T09:36:00Z"),
        last_status="HealthCheckFailed",
    )
    assert [entry.revision for entry in data.history] == [
        REVISION,
        KUSTOMIZATION_WITH_HISTORY["status"]["history"][1]["metadata"]["revision"],
    ]


def test_kustomization_before_flux_2_7_has_empty_history() -> None:
    data = parse_kustomization(fo.kustomization(last_applied_revision=REVISION))

    assert data.history == ()
    assert data.ready is not None and data.ready.message == f"Applied revision: {REVISION}"


def test_history_entry_without_a_revision_is_skipped() -> None:
    raw = fo.kustomization(last_applied_revision=REVISION, history=[fo.history_entry(REVISION)])
    raw["status"]["history"].append({"digest": DIGEST, "lastReconciledStatus": "Failed"})

    assert [entry.revision for entry in parse_kustomization(raw).history] == [REVISION]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/10 (100.0%)", (10, 0)),
        ("10/12 (83.3%)", (10, 2)),
        ("0/8 0%", (0, 8)),
        ("", (None, None)),
        (None, (None, None)),
        ("n/a", (None, None)),
    ],
)
def test_uptime_gives_passed_and_failed_or_none_without_data(
    text: str | None, expected: tuple[int | None, int | None]
) -> None:
    assert parse_uptime(text) == expected


@pytest.mark.parametrize(("passed", "failed"), [(10, 0), (0, 8), (57, 3), (0, 0)])
def test_builder_writes_uptime_as_canary_checker_does(passed: int, failed: int) -> None:
    expected = (passed, failed) if passed + failed else (None, None)

    assert parse_uptime(fo.uptime_text(passed, failed)) == expected


@pytest.mark.parametrize(
    ("passed", "failed", "error", "sole_result", "healthy"),
    [
        (None, None, None, False, None),
        (10, 0, None, False, True),
        (0, 8, None, True, False),
        (10, 2, None, None, None),  # a mixed hour in a canary of several checks cannot tell
        (10, 2, None, True, True),
        (10, 2, None, False, False),
        (10, 0, "connection refused", True, False),
    ],
)
def test_check_health_rule(
    passed: int | None,
    failed: int | None,
    error: str | None,
    sole_result: bool | None,
    healthy: bool | None,
) -> None:
    assert check_health(passed, failed, error, sole_result) is healthy


def test_canary_checks_are_mapped_from_uuids_back_to_names() -> None:
    data = parse_canary(CANARY_OBJECT)

    last_check = parse_timestamp("2025-06-02T09:40:00Z")
    # The canary says Failed, but its flux-pods-healthy entry only has a mixed hour: which of
    # the two checks failed last, the CR does not say.
    assert data.checks == (
        CanaryCheck("flux-pods-healthy", None, 10, 8, last_check, ""),
        CanaryCheck("kubernetes-api", True, 60, 0, last_check, ""),
    )
    assert (data.last_check, data.interval_seconds) == (last_check, 60.0)


def test_canary_check_without_data_is_unknown_not_zero() -> None:
    raw = {
        "status": {
            "status": "Passed",
            "checks": {"kubernetes-api": KUBE_API_ID, "flux-pods-healthy": FLUX_PODS_ID},
            "checkStatus": {KUBE_API_ID: {"uptime1h": "", "latency1h": ""}},
        }
    }

    data = parse_canary(raw)

    assert data.checks == (
        CanaryCheck("flux-pods-healthy", None, None, None, None, ""),
        CanaryCheck("kubernetes-api", None, None, None, None, ""),
    )


def test_canary_mixed_hour_after_a_passing_run_is_healthy() -> None:
    raw = fo.canary(checks={"kubernetes-api": fo.CheckRun(passed=50, failed=3, last_passed=True)})

    (check,) = parse_canary(raw).checks

    assert (check.healthy, check.passed_1h, check.failed_1h) == (True, 50, 3)


def test_canary_mixed_hour_of_the_only_check_takes_the_canarys_latest_result() -> None:
    raw = fo.canary(checks={"kubernetes-api": fo.CheckRun(passed=50, failed=3, last_passed=False)})

    (check,) = parse_canary(raw).checks

    assert raw["status"]["status"] == "Failed"
    assert check.healthy is False


def test_a_failing_check_never_decides_its_neighbour() -> None:
    """The old rule read a mixed hour through the canary's Failed status: a passing check was
    reported failing beside the one that failed."""
    raw = fo.canary(
        checks={
            "kubernetes-api": fo.CheckRun(passed=58, failed=2, last_passed=True),
            "flux-pods-healthy": fo.CheckRun(failed=60, error="pod source-controller not ready"),
        }
    )

    checks = {check.name: check.healthy for check in parse_canary(raw).checks}

    assert raw["status"]["status"] == "Failed"
    assert raw["status"]["errorMessage"] == "pod source-controller not ready"
    assert checks == {"flux-pods-healthy": False, "kubernetes-api": None}


def test_canary_without_a_run_has_no_last_check() -> None:
    raw = {k: v for k, v in fo.canary().items() if k != "status"}

    data = parse_canary(raw)

    assert (data.checks, data.last_check, data.interval_seconds) == ((), None, 60.0)


@pytest.mark.parametrize(
    ("spec", "seconds"),
    [
        ({"schedule": "@every 1m"}, 60.0),
        ({"schedule": "@every 1m30s"}, 90.0),
        ({"schedule": "@every 1.5h"}, 5400.0),
        ({"schedule": "@every 500ms"}, 0.5),
        ({"schedule": "@every soon"}, None),
        ({"schedule": "@every 0s"}, None),
        ({"schedule": "@hourly"}, 3600.0),
        ({"schedule": "@daily"}, 86400.0),
        ({"schedule": "@monthly"}, None),
        ({"schedule": "* * * * *"}, 60.0),
        ({"schedule": "*/5 * * * *"}, 300.0),
        ({"schedule": "0,10,40 * * * *"}, 1800.0),
        ({"schedule": "15 */6 * * *"}, 6 * 3600.0),
        ({"schedule": "CRON_TZ=Europe/Berlin 0 3 * * *"}, 86400.0),
        # The upstream type's own example: the longest gap is 06:30 to 20:30.
        ({"schedule": "30 3-6,20-23 * * *"}, 14 * 3600.0),
        ({"schedule": "0 9 * * mon-fri"}, 3 * 86400.0),
        ({"schedule": "0 9 1 * *"}, None),
        ({"schedule": "61 * * * *"}, None),
        ({"schedule": "* * *"}, None),
        ({"schedule": "@every 2m", "interval": 30}, 120.0),  # schedule wins, as GetSchedule
        ({"interval": 30}, 30.0),
        ({"interval": "30"}, None),
        ({}, None),
    ],
)
def test_canary_interval_reads_the_schedule_as_canary_checker_does(
    spec: dict[str, object], seconds: float | None
) -> None:
    assert canary_interval(spec) == seconds


def test_go_durations_and_schedules_reject_what_go_rejects() -> None:
    assert go_duration("1h2m3s") == 3723.0
    assert go_duration("1x") is None
    assert go_duration("") is None
    assert schedule_period("@reboot") is None


def test_canary_per_check_error_message_marks_the_check_failing() -> None:
    raw = fo.canary(checks={"kubernetes-api": fo.CheckRun(passed=5)})
    raw["status"]["checkStatus"][fo.check_id("platform-validation", "kubernetes-api")][
        "errorMessage"
    ] = "Get https://kubernetes.default.svc/healthz: EOF"

    (check,) = parse_canary(raw).checks

    assert check.healthy is False
    assert check.message == "Get https://kubernetes.default.svc/healthz: EOF"


def test_alert_and_provider_are_read_from_spec() -> None:
    alert = parse_alert(fo.alert(exclusion_list=[".*error.*"], suspend=True))
    provider = parse_provider(fo.provider())

    assert alert.provider_name == "github-dispatch"
    assert alert.event_severity == "info"
    assert alert.event_sources == (EventSource("Kustomization", "platform", "flux-system"),)
    assert alert.inclusion_list == (".*Reconciliation finished.*",)
    assert alert.exclusion_list == (".*error.*",)
    assert alert.suspended
    assert (provider.type, provider.secret_name, provider.suspended) == (
        "githubdispatch",
        "github-token",
        False,
    )


def test_alert_severity_defaults_to_info_as_the_crd_does() -> None:
    raw = fo.alert()
    del raw["spec"]["eventSeverity"]

    assert parse_alert(raw).event_severity == "info"


def test_helm_release_ready_is_read_as_helm_controller_summarizes_it() -> None:
    unknown = fo.helm_release("c", "apps", ready="Unknown", reason="Progressing", message="x")
    no_status = {k: v for k, v in fo.helm_release("d", "apps").items() if k != "status"}

    assert parse_helm_release(fo.helm_release("a", "apps")) == HelmReleaseStatus(
        "apps",
        "a",
        True,
        "UpgradeSucceeded",
        "Helm upgrade succeeded for release apps/a.v3 with chart podinfo@6.7.1",
    )
    assert parse_helm_release(fo.helm_release("b", "apps", ready=False)) == HelmReleaseStatus(
        "apps",
        "b",
        False,
        "UpgradeFailed",
        "Helm upgrade failed for release apps/b with chart podinfo@6.7.1: "
        "context deadline exceeded",
    )
    assert parse_helm_release(unknown) == HelmReleaseStatus("apps", "c", None, "Progressing", "x")
    assert parse_helm_release(no_status) == HelmReleaseStatus("apps", "d", None, "", "")


def test_helm_release_message_is_bounded() -> None:
    raw = fo.helm_release("a", ready=False, message="resource Deployment/apps/a not ready " * 50)

    assert len(parse_helm_release(raw).message) == 300


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
            '"ocirepositories.source.toolkit.fluxcd.io \\"x\\" not found","reason":"NotFound",'
            '"details":{"name":"x","group":"source.toolkit.fluxcd.io","kind":"ocirepositories"},'
            '"code":404}',
            Missing.NOT_FOUND,
        ),
        (
            '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
            '"the server could not find the requested resource","reason":"NotFound","code":404}',
            Missing.CRD_MISSING,
        ),
        ("404 page not found\n", Missing.CRD_MISSING),
        (None, Missing.CRD_MISSING),
    ],
)
def test_not_found_body_tells_object_from_resource(body: str | None, expected: Missing) -> None:
    assert missing_from_not_found(body) is expected


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, ErrorReason.UNAUTHORIZED),
        (403, ErrorReason.FORBIDDEN),
        (429, ErrorReason.RATE_LIMITED),
        (500, ErrorReason.SERVER_ERROR),
        (503, ErrorReason.SERVER_ERROR),
        (400, ErrorReason.BAD_RESPONSE),
    ],
)
def test_api_errors_map_to_reasons(status: int, reason: ErrorReason) -> None:
    error = ApiException(
        status=status, reason="Whatever", body='{"kind":"Status","message":"the server says no"}'
    )

    mapped = api_error("cluster live: get x", error)

    assert mapped.reason is reason
    assert str(mapped) == f"cluster live: get x: HTTP {status}: the server says no"


def test_client_side_failures_map_to_unreachable_or_bad_response() -> None:
    tls = ApiException(status=0, reason="SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED]")
    content = ApiException(status=0, reason="Unsupported content type: text/html")

    assert api_error("p", tls).reason is ErrorReason.UNREACHABLE
    assert api_error("p", content).reason is ErrorReason.BAD_RESPONSE


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            urllib3.exceptions.NewConnectionError(None, "Connection refused"),
            ErrorReason.UNREACHABLE,
        ),
        (urllib3.exceptions.ConnectTimeoutError(None, "connect timed out"), ErrorReason.TIMEOUT),
        (
            urllib3.exceptions.ReadTimeoutError(None, "/apis", "Read timed out."),
            ErrorReason.TIMEOUT,
        ),
        (urllib3.exceptions.ProtocolError("Connection aborted."), ErrorReason.UNREACHABLE),
        (
            urllib3.exceptions.MaxRetryError(
                None, "/apis", urllib3.exceptions.ReadTimeoutError(None, "/", "t")
            ),
            ErrorReason.TIMEOUT,
        ),
    ],
)
def test_connection_errors_map_to_reasons(
    error: urllib3.exceptions.HTTPError, reason: ErrorReason
) -> None:
    assert connection_error("cluster live", error).reason is reason


# --- the fake apiserver answers like a real one ----------------------------------------------


def test_fake_404s_match_the_real_apiserver(kube_api: RunningKubeAPI) -> None:
    base = f"{kube_api.server.url}/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system"
    headers = {"Authorization": "Bearer fake-token"}

    missing_object = httpx.get(f"{base}/ocirepositories/nope", headers=headers)
    missing_resource = httpx.get(f"{base}/buckets/nope", headers=headers)

    assert missing_object.status_code == missing_resource.status_code == 404
    assert missing_object.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'ocirepositories.source.toolkit.fluxcd.io "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "source.toolkit.fluxcd.io", "kind": "ocirepositories"},
        "code": 404,
    }
    assert missing_resource.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "code": 404,
    }


def test_fake_serves_lists_and_discovery(kube_api: RunningKubeAPI) -> None:
    server = kube_api.server
    server.put(fo.helm_release("podinfo"))
    headers = {"Authorization": "Bearer fake-token"}

    listing = httpx.get(
        f"{server.url}/apis/helm.toolkit.fluxcd.io/v2/helmreleases", headers=headers
    ).json()
    groups = httpx.get(f"{server.url}/apis", headers=headers).json()

    assert listing["kind"] == "HelmReleaseList"
    assert listing["metadata"]["resourceVersion"].isdigit()
    assert [item["metadata"]["name"] for item in listing["items"]] == ["podinfo"]
    assert groups["kind"] == "APIGroupList"
    assert "canaries.flanksource.com" in [group["name"] for group in groups["groups"]]


def test_fake_refuses_objects_whose_crd_is_not_installed(
    kube_api_factory: KubeAPIFactory,
) -> None:
    server = kube_api_factory(FLUX_2_8).server

    with pytest.raises(ValueError, match="Canary"):
        server.put(fo.canary())


# --- the client against fake apiservers -----------------------------------------------------


def populate(server: FakeKubeAPI, revision: str = REVISION) -> None:
    server.put(fo.oci_repository(revision=revision))
    server.put(
        fo.kustomization(last_applied_revision=revision, history=[fo.history_entry(revision)])
    )
    server.put(fo.canary())
    server.put(fo.alert())
    server.put(fo.provider())
    server.put(fo.helm_release("podinfo"))
    server.put(fo.helm_release("redis", ready=False))


def poll(api: RunningKubeAPI, wants: ClusterWants = EVERYTHING, timeout: float = 2.0):
    client = KubeClient(api.cluster(), timeout)
    try:
        return client.read(wants)
    finally:
        client.close()


def poll_error(
    api: RunningKubeAPI, wants: ClusterWants = EVERYTHING, timeout: float = 2.0
) -> SourceError:
    with pytest.raises(SourceError) as caught:
        poll(api, wants, timeout)
    return caught.value


def test_every_kind_is_read_through_the_official_client(kube_api: RunningKubeAPI) -> None:
    populate(kube_api.server)

    data = poll(kube_api)

    source = data.oci_repositories[SOURCE]
    assert source.api_version == "source.toolkit.fluxcd.io/v1"
    assert source.artifact_revision == REVISION
    assert source.ready is not None and source.ready.is_true
    kustomization = data.kustomizations[PLATFORM]
    assert kustomization.last_applied_revision == REVISION
    assert [entry.revision for entry in kustomization.history] == [REVISION]
    assert [(c.name, c.healthy, c.passed_1h) for c in data.canaries[CANARY].checks] == [
        ("flux-pods-healthy", True, 60),
        ("kubernetes-api", True, 60),
    ]
    assert data.alerts[ALERT].provider_name == "github-dispatch"
    assert data.providers[PROVIDER].type == "githubdispatch"
    assert [(r.name, r.ready, r.reason) for r in data.helm_releases] == [
        ("podinfo", True, "UpgradeSucceeded"),
        ("redis", False, "UpgradeFailed"),
    ]
    assert data.canaries[CANARY].last_check == parse_timestamp(fo.DEFAULT_TIME)


def test_each_group_version_is_discovered_once_per_poll(kube_api: RunningKubeAPI) -> None:
    populate(kube_api.server)
    wants = ClusterWants(alerts=frozenset({ALERT}), providers=frozenset({PROVIDER}))

    poll(kube_api, wants)

    paths = [request.path for request in kube_api.server.requests]
    assert paths.count("/apis/notification.toolkit.fluxcd.io/v1beta3") == 1
    assert not any(path.startswith("/apis/canaries.flanksource.com") for path in paths)


@pytest.mark.parametrize(
    ("resources", "api_version"),
    [
        (FLUX_2_5, "source.toolkit.fluxcd.io/v1beta2"),
        (FLUX_2_6, "source.toolkit.fluxcd.io/v1"),
        (FLUX_2_8, "source.toolkit.fluxcd.io/v1"),
    ],
)
def test_oci_repository_falls_back_to_v1beta2_before_flux_2_6(
    kube_api_factory: KubeAPIFactory, resources: tuple, api_version: str
) -> None:
    api = kube_api_factory(resources)
    api.server.put(fo.oci_repository(api_version=api_version, revision=REVISION))

    data = poll(api, ClusterWants(oci_repositories=frozenset({SOURCE})))

    assert data.oci_repositories[SOURCE].api_version == api_version
    assert data.oci_repositories[SOURCE].artifact_revision == REVISION


def test_missing_crd_is_told_apart_from_missing_object(kube_api_factory: KubeAPIFactory) -> None:
    api = kube_api_factory(FLUX_2_8)  # no canary-checker
    elsewhere = ObjectRef("flux-system", "elsewhere")
    wants = ClusterWants(oci_repositories=frozenset({elsewhere}), canaries=frozenset({CANARY}))

    data = poll(api, wants)

    assert data.oci_repositories == {elsewhere: Missing.NOT_FOUND}
    assert data.canaries == {CANARY: Missing.CRD_MISSING}
    assert data.helm_releases == ()


def test_cluster_without_flux_reports_every_crd_missing(kube_api_factory: KubeAPIFactory) -> None:
    api = kube_api_factory(CANARY_CHECKER)

    data = poll(api)

    assert set(data.oci_repositories.values()) == {Missing.CRD_MISSING}
    assert set(data.kustomizations.values()) == {Missing.CRD_MISSING}
    assert set(data.alerts.values()) == {Missing.CRD_MISSING}
    assert data.canaries[CANARY] is Missing.NOT_FOUND
    assert data.helm_releases is Missing.CRD_MISSING


def test_uninstalling_a_crd_is_seen_on_the_next_poll(kube_api: RunningKubeAPI) -> None:
    populate(kube_api.server)
    client = KubeClient(kube_api.cluster(), 2.0)
    try:
        assert isinstance(client.read(EVERYTHING).canaries[CANARY].checks, tuple)
        kube_api.server.set_resources(FLUX_2_8)
        assert client.read(EVERYTHING).canaries[CANARY] is Missing.CRD_MISSING
    finally:
        client.close()


def test_canary_uuid_mapping_and_missing_uptime_through_the_api(kube_api: RunningKubeAPI) -> None:
    kube_api.server.put(
        fo.canary(
            checks={
                "kubernetes-api": fo.CheckRun(passed=58, failed=2, last_passed=True),
                "flux-pods-healthy": fo.CheckRun(),
            }
        )
    )

    (canary,) = poll(kube_api, ClusterWants(canaries=frozenset({CANARY}))).canaries.values()

    # The canary's status came from kubernetes-api, but with two checks nothing says so.
    assert [(c.name, c.healthy, c.passed_1h, c.failed_1h) for c in canary.checks] == [
        ("flux-pods-healthy", None, None, None),
        ("kubernetes-api", None, 58, 2),
    ]


def test_helm_releases_are_counted_across_pages(kube_api: RunningKubeAPI) -> None:
    for index in range(501):
        kube_api.server.put(fo.helm_release(f"release-{index:03}", ready=index % 2 == 0))

    data = poll(kube_api, ClusterWants())

    assert not isinstance(data.helm_releases, Missing)
    assert len(data.helm_releases) == 501
    assert sum(1 for release in data.helm_releases if release.ready) == 251
    assert data.helm_releases[0].name == "release-000"
    lists = [r for r in kube_api.server.requests if r.path.endswith("/helmreleases")]
    assert len(lists) == 2


# --- failures are SourceErrors with a reason and no secret -----------------------------------

TOKEN = "tok-7f3a9c1e5b2d8f4a6c0e"


def assert_secret_free(error: SourceError) -> None:
    for text in (str(error), repr(error), *map(str, error.args)):
        assert TOKEN not in text


def test_wrong_token_is_unauthorized(kube_api_factory: KubeAPIFactory, tmp_path: Path) -> None:
    api = kube_api_factory(token="the-right-one")
    api.server.write_kubeconfig(api.kubeconfig, token=TOKEN)

    error = poll_error(api)

    assert error.reason is ErrorReason.UNAUTHORIZED
    assert "HTTP 401" in str(error)
    assert_secret_free(error)


def test_rbac_denial_is_forbidden(kube_api_factory: KubeAPIFactory) -> None:
    api = kube_api_factory(token=TOKEN)
    populate(api.server)
    api.server.forbid("helm.toolkit.fluxcd.io", "helmreleases")

    error = poll_error(api)

    assert error.reason is ErrorReason.FORBIDDEN
    assert 'cannot list resource "helmreleases"' in str(error)
    assert_secret_free(error)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (429, ErrorReason.RATE_LIMITED),
        (500, ErrorReason.SERVER_ERROR),
        (503, ErrorReason.SERVER_ERROR),
    ],
)
def test_forced_server_errors(
    kube_api_factory: KubeAPIFactory, status: int, reason: ErrorReason
) -> None:
    api = kube_api_factory(token=TOKEN)
    api.server.fail_with(status)

    error = poll_error(api)

    assert error.reason is reason
    assert_secret_free(error)


def test_garbage_body_is_a_bad_response(kube_api_factory: KubeAPIFactory) -> None:
    api = kube_api_factory(token=TOKEN)
    api.server.serve_garbage()

    error = poll_error(api)

    assert error.reason is ErrorReason.BAD_RESPONSE
    assert_secret_free(error)


def test_server_down_is_unreachable_then_recovers(kube_api_factory: KubeAPIFactory) -> None:
    api = kube_api_factory(token=TOKEN)
    populate(api.server)
    client = KubeClient(api.cluster(), 2.0)
    try:
        api.server.stop()
        with pytest.raises(SourceError) as caught:
            client.read(EVERYTHING)
        api.server.start()
        recovered = client.read(EVERYTHING)
    finally:
        client.close()

    assert caught.value.reason is ErrorReason.UNREACHABLE
    assert_secret_free(caught.value)
    assert recovered.oci_repositories[SOURCE].artifact_revision == REVISION


def test_slow_server_times_out_within_the_timeout(kube_api_factory: KubeAPIFactory) -> None:
    api = kube_api_factory(token=TOKEN)
    api.server.slow_down(5.0)
    started = time.monotonic()

    error = poll_error(api, timeout=0.2)

    assert error.reason is ErrorReason.TIMEOUT
    assert time.monotonic() - started < 2.0
    assert_secret_free(error)


@pytest.mark.parametrize(
    "content",
    [
        f"users: [{{name: x, user: {{token: {TOKEN}}}}}]\ncontexts: [broken",
        f"apiVersion: v1\nkind: Config\nusers:\n- name: x\n  user: {{token: {TOKEN}}}\n",
        "- just\n- a list\n",
        "",
    ],
)
def test_unloadable_kubeconfig_is_a_source_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    client = KubeClient(ClusterConfig("live", path, None, False), 1.0)

    with pytest.raises(SourceError) as caught:
        client.read(EVERYTHING)

    assert caught.value.reason is ErrorReason.UNREACHABLE
    assert str(caught.value).startswith(f"cluster live: cannot load kubeconfig {path}")
    assert_secret_free(caught.value)


def test_missing_kubeconfig_and_unknown_context(kube_api: RunningKubeAPI, tmp_path: Path) -> None:
    absent = KubeClient(ClusterConfig("live", tmp_path / "absent", None, False), 1.0)
    wrong_context = KubeClient(kube_api.cluster(context="nope"), 1.0)

    for client in (absent, wrong_context):
        with pytest.raises(SourceError) as caught:
            client.read(EVERYTHING)
        assert caught.value.reason is ErrorReason.UNREACHABLE
    assert "(context 'nope')" in str(caught.value)


def test_in_cluster_outside_a_cluster_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    client = KubeClient(ClusterConfig("live", None, None, True), 1.0)

    with pytest.raises(SourceError) as caught:
        client.read(EVERYTHING)

    assert caught.value.reason is ErrorReason.UNREACHABLE
    assert "in-cluster" in str(caught.value)


def test_a_fixed_kubeconfig_heals_the_next_poll(kube_api: RunningKubeAPI, tmp_path: Path) -> None:
    populate(kube_api.server)
    path = tmp_path / "late"
    client = KubeClient(ClusterConfig("live", path, None, False), 2.0)
    try:
        with pytest.raises(SourceError):
            client.read(EVERYTHING)
        kube_api.server.write_kubeconfig(path)
        assert client.read(EVERYTHING).oci_repositories[SOURCE].artifact_revision == REVISION
    finally:
        client.close()


# --- clusters are isolated -------------------------------------------------------------------


def test_two_clusters_do_not_share_configuration(
    kube_api_factory: KubeAPIFactory,
) -> None:
    integration = kube_api_factory(token="integration-token")
    live = kube_api_factory(token="live-token")
    populate(integration.server, revision="0.3.5-rc.1@" + fo.sha256_of("rc"))
    populate(live.server, revision="0.3.4@" + fo.sha256_of("stable"))
    default_host = Configuration.get_default().host
    clients = [
        KubeClient(integration.cluster("integration"), 2.0),
        KubeClient(live.cluster("live"), 2.0),
    ]
    try:
        seen = [
            client.read(EVERYTHING).oci_repositories[SOURCE].artifact_revision
            for client in (*clients, *reversed(clients))
        ]
    finally:
        for client in clients:
            client.close()

    assert [revision.split("@")[0] for revision in seen] == [
        "0.3.5-rc.1",
        "0.3.4",
        "0.3.4",
        "0.3.5-rc.1",
    ]
    for api in (integration, live):
        assert api.server.requests
        assert all(request.authorized for request in api.server.requests)
    assert Configuration.get_default().host == default_host


def test_context_picks_its_own_server(kube_api_factory: KubeAPIFactory, tmp_path: Path) -> None:
    first, second = kube_api_factory(token="first"), kube_api_factory(token="second")
    populate(second.server)
    merged = first.server.kubeconfig("first")
    for key in ("clusters", "users", "contexts"):
        merged[key] += second.server.kubeconfig("second")[key]
    path = tmp_path / "merged"
    path.write_text(yaml.safe_dump(merged))
    client = KubeClient(ClusterConfig("live", path, "second", False), 2.0)
    try:
        data = client.read(ClusterWants(oci_repositories=frozenset({SOURCE})))
    finally:
        client.close()

    assert data.oci_repositories[SOURCE].artifact_revision == REVISION
    assert not first.server.requests


def _discovery_requests(api: RunningKubeAPI) -> list[str]:
    return [r.path for r in api.server.requests if r.path.count("/") == 3]  # /apis/<g>/<v>


def test_a_steady_poll_rediscovers_nothing(kube_api: RunningKubeAPI) -> None:
    populate(kube_api.server)
    client = KubeClient(kube_api.cluster(), 2.0)
    try:
        client.read(EVERYTHING)
        assert _discovery_requests(kube_api)
        kube_api.server.clear_requests()
        client.read(EVERYTHING)
        assert _discovery_requests(kube_api) == []
        assert kube_api.server.requests  # the objects themselves are still read
    finally:
        client.close()


def test_a_crd_installed_later_is_found_on_the_next_poll(
    kube_api_factory: KubeAPIFactory,
) -> None:
    api = kube_api_factory(FLUX_2_8)  # no canary-checker yet
    canary_only = ClusterWants(canaries=frozenset({CANARY}))
    client = KubeClient(api.cluster(), 2.0)
    try:
        assert client.read(canary_only).canaries[CANARY] is Missing.CRD_MISSING
        api.server.set_resources((*FLUX_2_8, *CANARY_CHECKER))
        assert client.read(canary_only).canaries[CANARY] is Missing.NOT_FOUND
    finally:
        client.close()


# --- the simulator's canary and HelmRelease breaks, read back through the client -------------

SCENARIO_END = 1_793_534_400.0


def _play_and_poll_live(name: str) -> ClusterData:
    with Lab(start=SCENARIO_END - 3 * 86400) as lab:
        play(lab.sim, SCENARIOS_BY_NAME[name], SCENARIO_END)
        client = KubeClient(lab.config().clusters["live"], 2.0)
        try:
            return client.read(ClusterWants(canaries=frozenset({CANARY})))
        finally:
            client.close()


def test_neighbour_failing_scenario_fails_only_the_failing_check() -> None:
    canary = _play_and_poll_live("canary-neighbour-failing").canaries[CANARY]

    assert not isinstance(canary, Missing)
    assert {c.name: (c.healthy, c.failed_1h) for c in canary.checks} == {
        "flux-pods-healthy": (False, 60),
        "kubernetes-api": (None, 2),
    }
    assert canary.last_check == SCENARIO_END


def test_stopped_canary_keeps_a_last_check_from_days_ago() -> None:
    canary = _play_and_poll_live("canary-stopped").canaries[CANARY]

    assert not isinstance(canary, Missing) and canary.last_check is not None
    assert SCENARIO_END - canary.last_check > 86400
    assert canary.interval_seconds == 60.0


def test_missing_canary_and_failing_helm_release_scenarios() -> None:
    assert _play_and_poll_live("canary-missing").canaries[CANARY] is Missing.NOT_FOUND
    releases = _play_and_poll_live("live-helmrelease-failing").helm_releases

    assert not isinstance(releases, Missing)
    assert [(r.namespace, r.name, r.ready, r.reason) for r in releases] == [
        ("apps", "podinfo", False, "UpgradeFailed")
    ]
