"""Builders of the objects the exporter reads, shaped exactly as their controllers write them.

Flux source-, kustomize-, helm- and notification-controller and canary-checker each own one
kind; every builder takes keyword arguments for the variations the simulator and the tests
need and fills the rest with what a healthy homelab cluster would hold. Times are epoch
seconds or RFC 3339 strings.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Timestamp = float | str

OCI_REPOSITORY_V1 = "source.toolkit.fluxcd.io/v1"
OCI_REPOSITORY_V1BETA2 = "source.toolkit.fluxcd.io/v1beta2"
KUSTOMIZATION_V1 = "kustomize.toolkit.fluxcd.io/v1"
HELM_RELEASE_V2 = "helm.toolkit.fluxcd.io/v2"
NOTIFICATION_V1BETA3 = "notification.toolkit.fluxcd.io/v1beta3"
CANARY_V1 = "canaries.flanksource.com/v1"

DEFAULT_TIME = "2025-06-02T09:30:00Z"
DEFAULT_URL = "oci://ghcr.io/owner/homelab/platform"
DEFAULT_SOURCE_REPOSITORY = "https://github.com/owner/homelab"
# Why Flux marks a fetch failure with FetchFailed=True on top of Ready=False.
_FETCH_REASONS = frozenset(
    {"ReadOperationFailed", "AuthenticationFailed", "OCIArtifactPullFailed", "URLInvalid"}
)
_UID_NAMESPACE = uuid.UUID("6f1c3f4e-1d2a-4c55-9a51-0b6c2f1e8d77")


def rfc3339(value: Timestamp) -> str:
    if isinstance(value, str):
        return value
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_of(seed: str) -> str:
    """A stable `sha256:<hex>` digest for a seed, so fixtures are reproducible."""
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def flux_revision(tag: str, digest: str | None = None) -> str:
    """source-controller's artifact revision for a tag or semver ref: `<tag>@sha256:<hex>`."""
    return f"{tag}@{digest or sha256_of(tag)}"


def git_revision(sha: str, branch: str = "main") -> str:
    """The `org.opencontainers.image.revision` value `flux push artifact` writes."""
    return f"{branch}@sha1:{sha}"


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, "/".join(parts)))


def _metadata(kind: str, namespace: str, name: str, generation: int) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "uid": _uid(kind, namespace, name),
        "generation": generation,
        "creationTimestamp": "2025-01-10T08:00:00Z",
        "labels": {"kustomize.toolkit.fluxcd.io/name": "flux-system"},
    }


def condition(
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    at: Timestamp = DEFAULT_TIME,
    observed_generation: int = 1,
) -> dict[str, Any]:
    """A metav1.Condition; `status` may be a bool or "True" | "False" | "Unknown"."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    return {
        "type": type_,
        "status": status,
        "observedGeneration": observed_generation,
        "lastTransitionTime": rfc3339(at),
        "reason": reason,
        "message": message,
    }


def _ref(
    semver: str | None, semver_filter: str | None, tag: str | None, digest: str | None
) -> dict[str, str]:
    fields = {"digest": digest, "semver": semver, "semverFilter": semver_filter, "tag": tag}
    return {key: value for key, value in fields.items() if value is not None}


def _no_match_message(url: str, semver: str | None) -> str:
    return f"failed to determine the artifact tag for '{url}': no match found for semver: {semver}"


def oci_repository(
    name: str = "flux-system",
    namespace: str = "flux-system",
    *,
    api_version: str = OCI_REPOSITORY_V1,
    url: str = DEFAULT_URL,
    semver: str | None = ">= 0.0.0-0",
    semver_filter: str | None = None,
    tag: str | None = None,
    digest: str | None = None,
    interval: str = "1m",
    suspend: bool = False,
    generation: int = 1,
    observed_generation: int | None = None,
    ready: bool | str = True,
    reason: str | None = None,
    message: str | None = None,
    revision: str | None = None,
    last_update: Timestamp = DEFAULT_TIME,
    transition: Timestamp | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An OCIRepository. `revision` is the stored artifact (`<tag>@sha256:<hex>`, or a bare
    digest for a digest ref); without it the status has no artifact yet. A failing source keeps
    the artifact it stored before, as source-controller does, so `revision` and `ready=False`
    combine. The default failure is the "no match found for semver" one."""
    observed = generation if observed_generation is None else observed_generation
    spec: dict[str, Any] = {
        "interval": interval,
        "url": url,
        "ref": _ref(semver, semver_filter, tag, digest),
        "provider": "generic",
        "timeout": "60s",
    }
    if suspend:
        spec["suspend"] = True
    is_ready = ready is True or ready == "True"
    if is_ready:
        reason = reason or "Succeeded"
        message = message or f"stored artifact for revision '{revision}'"
    elif ready == "Unknown":
        reason = reason or "Progressing"
        message = message or "reconciliation in progress"
    else:
        reason = reason or "ReadOperationFailed"
        message = message or _no_match_message(url, semver)
    at = last_update if transition is None else transition
    conditions = [condition("Ready", ready, reason, message, at=at, observed_generation=observed)]
    if not is_ready and reason in _FETCH_REASONS:
        conditions.append(
            condition("FetchFailed", True, reason, message, at=at, observed_generation=observed)
        )
    status: dict[str, Any] = {"observedGeneration": observed, "conditions": conditions}
    if revision is not None:
        status["artifact"] = _oci_artifact(namespace, name, revision, last_update, annotations)
        status["url"] = status["artifact"]["url"]
    return {
        "apiVersion": api_version,
        "kind": "OCIRepository",
        "metadata": {
            **_metadata("OCIRepository", namespace, name, generation),
            "finalizers": ["finalizers.fluxcd.io"],
        },
        "spec": spec,
        "status": status,
    }


def _oci_artifact(
    namespace: str,
    name: str,
    revision: str,
    last_update: Timestamp,
    annotations: Mapping[str, str] | None,
) -> dict[str, Any]:
    # The artifact digest is of source-controller's stored tarball, not the OCI manifest.
    tarball = sha256_of(f"tarball:{revision}")
    path = f"ocirepository/{namespace}/{name}/{tarball.removeprefix('sha256:')}.tar.gz"
    tag = revision.split("@", 1)[0]
    default_annotations = {
        "org.opencontainers.image.created": rfc3339(last_update),
        "org.opencontainers.image.revision": git_revision(hashlib.sha1(tag.encode()).hexdigest()),
        "org.opencontainers.image.source": DEFAULT_SOURCE_REPOSITORY,
    }
    return {
        "digest": tarball,
        "lastUpdateTime": rfc3339(last_update),
        "metadata": dict(default_annotations if annotations is None else annotations),
        "path": path,
        "revision": revision,
        "size": 48213,
        "url": f"http://source-controller.flux-system.svc.cluster.local./{path}",
    }


def history_entry(
    revision: str,
    *,
    status: str = "ReconciliationSucceeded",
    first_reconciled: Timestamp = DEFAULT_TIME,
    last_reconciled: Timestamp | None = None,
    total: int = 1,
    duration: str = "2.412s",
    origin_revision: str | None = None,
) -> dict[str, Any]:
    """One Kustomization .status.history snapshot (Flux 2.7+). Its `digest` is of the built
    manifests, so it is derived from the revision here but never equal to the OCI digest."""
    metadata = {"revision": revision}
    if origin_revision is not None:
        metadata["originRevision"] = origin_revision
    return {
        "digest": sha256_of(f"manifests:{revision}"),
        "firstReconciled": rfc3339(first_reconciled),
        "lastReconciled": rfc3339(first_reconciled if last_reconciled is None else last_reconciled),
        "lastReconciledDuration": duration,
        "lastReconciledStatus": status,
        "totalReconciliations": total,
        "metadata": metadata,
    }


def kustomization(
    name: str = "platform",
    namespace: str = "flux-system",
    *,
    source_kind: str = "OCIRepository",
    source_name: str = "flux-system",
    path: str = "./",
    interval: str = "10m",
    suspend: bool = False,
    generation: int = 1,
    observed_generation: int | None = None,
    ready: bool | str = True,
    reason: str | None = None,
    message: str | None = None,
    last_applied_revision: str | None = None,
    last_attempted_revision: str | None = None,
    last_applied_origin_revision: str | None = None,
    transition: Timestamp = DEFAULT_TIME,
    history: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Kustomization. `history=None` leaves out .status.history as Flux before 2.7 does; pass
    `history_entry(...)` values, newest first, for 2.7+. The attempted revision defaults to the
    applied one; the default failure is a health check failing on the attempted revision."""
    observed = generation if observed_generation is None else observed_generation
    attempted = last_attempted_revision or last_applied_revision
    is_ready = ready is True or ready == "True"
    if is_ready:
        reason = reason or "ReconciliationSucceeded"
        message = message or f"Applied revision: {last_applied_revision}"
    elif ready == "Unknown":
        reason = reason or "Progressing"
        message = message or "Reconciliation in progress"
    else:
        reason = reason or "HealthCheckFailed"
        message = message or (
            "health check failed after 5m0s: timeout waiting for: "
            "[Deployment/apps/podinfo status: 'InProgress']"
        )
    spec: dict[str, Any] = {
        "interval": interval,
        "path": path,
        "prune": True,
        "wait": True,
        "timeout": "5m",
        "sourceRef": {"kind": source_kind, "name": source_name},
    }
    if suspend:
        spec["suspend"] = True
    ready_condition = condition(
        "Ready", ready, reason, message, at=transition, observed_generation=observed
    )
    status: dict[str, Any] = {"observedGeneration": observed, "conditions": [ready_condition]}
    if last_applied_revision is not None:
        status["lastAppliedRevision"] = last_applied_revision
    if last_applied_origin_revision is not None:
        status["lastAppliedOriginRevision"] = last_applied_origin_revision
    if attempted is not None:
        status["lastAttemptedRevision"] = attempted
    if history is not None:
        status["history"] = list(history)
    status["inventory"] = {"entries": [{"id": "flux-system_podinfo_apps_Deployment", "v": "v1"}]}
    return {
        "apiVersion": KUSTOMIZATION_V1,
        "kind": "Kustomization",
        "metadata": {
            **_metadata("Kustomization", namespace, name, generation),
            "finalizers": ["finalizers.fluxcd.io"],
        },
        "spec": spec,
        "status": status,
    }


@dataclass(frozen=True)
class CheckRun:
    """What canary-checker has recorded for one check over the rolling hour.

    `last_passed` is the latest result; it defaults to "nothing failed this hour". A check
    with no results at all (passed == failed == 0) has no uptime1h in its checkStatus entry.
    """

    passed: int = 0
    failed: int = 0
    last_passed: bool | None = None
    latency_ms: int = 12
    error: str = ""

    @property
    def has_data(self) -> bool:
        return self.passed + self.failed > 0

    @property
    def latest_passed(self) -> bool:
        return self.failed == 0 if self.last_passed is None else self.last_passed


def uptime_text(passed: int, failed: int) -> str:
    """canary-checker's Uptime.String(): "" with no data, "0/8 0%" when nothing passed."""
    if passed == 0 and failed == 0:
        return ""
    if passed == 0:
        return f"0/{failed} 0%"
    percentage = 100.0 * (1 - failed / (passed + failed))
    return f"{passed}/{passed + failed} ({percentage:0.1f}%)"


def check_id(canary_name: str, check_name: str) -> str:
    """The stable UUID canary-checker's database would give a check."""
    return _uid("check", canary_name, check_name)


def _summary(texts: list[str]) -> str:
    # canary-checker reports the first message and how many more there were.
    if len(texts) > 1:
        return f"{texts[0]}, ({len(texts) - 1} more)"
    return texts[0] if texts else ""


def _canary_spec(names: Iterable[str]) -> dict[str, Any]:
    http, kubernetes = [], []
    for check_name in names:
        if check_name == "flux-pods-healthy":
            kubernetes.append(
                {
                    "name": check_name,
                    "kind": "Pod",
                    "namespaceSelector": {"name": "flux-system"},
                    "ready": True,
                }
            )
        else:
            http.append(
                {
                    "name": check_name,
                    "url": "https://kubernetes.default.svc/healthz",
                    "responseCodes": [200, 401],
                }
            )
    spec: dict[str, Any] = {"schedule": "@every 1m"}
    if http:
        spec["http"] = http
    if kubernetes:
        spec["kubernetes"] = kubernetes
    return spec


def canary(
    name: str = "platform-validation",
    namespace: str = "monitoring",
    *,
    checks: Mapping[str, CheckRun] | None = None,
    last_check: Timestamp = DEFAULT_TIME,
    generation: int = 1,
) -> dict[str, Any]:
    """A Canary as canary-checker's status reporter patches it: `status.checks` maps each
    check name to its UUID and `status.checkStatus` is keyed by that UUID, holding only
    uptime1h, latency1h and lastTransitionedTime. `status.status` comes from the check written
    last (the mapping's order), not from all of them, as upstream does."""
    if checks is None:
        checks = {"kubernetes-api": CheckRun(passed=60), "flux-pods-healthy": CheckRun(passed=60)}
    ids = {check_name: check_id(name, check_name) for check_name in checks}
    check_status: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    canary_status = "Passed"
    passed_total = failed_total = 0
    for check_name, run in checks.items():
        entry: dict[str, Any] = {"lastTransitionedTime": rfc3339(last_check)}
        if run.has_data:
            entry["uptime1h"] = uptime_text(run.passed, run.failed)
            entry["latency1h"] = f"rolling1h={run.latency_ms}ms"
            canary_status = "Passed" if run.latest_passed else "Failed"
            if not run.latest_passed:
                errors.append(run.error or f"{check_name} failed")
        check_status[ids[check_name]] = entry
        passed_total += run.passed
        failed_total += run.failed
    status: dict[str, Any] = {
        "persistedID": _uid("canary", namespace, name),
        "observedGeneration": generation,
        "checks": ids,
        "checkStatus": check_status,
        "status": canary_status,
        "lastCheck": rfc3339(last_check),
        "lastTransitionedTime": rfc3339(last_check),
        "uptime1h": uptime_text(passed_total, failed_total),
        "latency1h": f"{max((r.latency_ms for r in checks.values()), default=0)}ms",
    }
    if errors:
        status["errorMessage"] = _summary(errors)
    return {
        "apiVersion": CANARY_V1,
        "kind": "Canary",
        "metadata": {
            **_metadata("Canary", namespace, name, generation),
            "annotations": {"source": "kubernetes"},
        },
        "spec": _canary_spec(checks),
        "status": status,
    }


def alert(
    name: str = "validation-success",
    namespace: str = "flux-system",
    *,
    provider: str = "github-dispatch",
    event_severity: str = "info",
    event_sources: Sequence[Mapping[str, str]] | None = None,
    inclusion_list: Sequence[str] | None = (".*Reconciliation finished.*",),
    exclusion_list: Sequence[str] | None = None,
    event_metadata: Mapping[str, str] | None = None,
    suspend: bool = False,
) -> dict[str, Any]:
    """An Alert (v1beta3): spec only, the API has had no status since Flux 2.2."""
    sources = event_sources
    if sources is None:
        sources = [{"kind": "Kustomization", "name": "platform", "namespace": "flux-system"}]
    spec: dict[str, Any] = {
        "providerRef": {"name": provider},
        "eventSeverity": event_severity,
        "eventSources": [dict(source) for source in sources],
    }
    if inclusion_list is not None:
        spec["inclusionList"] = list(inclusion_list)
    if exclusion_list is not None:
        spec["exclusionList"] = list(exclusion_list)
    if event_metadata is not None:
        spec["eventMetadata"] = dict(event_metadata)
    if suspend:
        spec["suspend"] = True
    return {
        "apiVersion": NOTIFICATION_V1BETA3,
        "kind": "Alert",
        "metadata": _metadata("Alert", namespace, name, 1),
        "spec": spec,
    }


def provider(
    name: str = "github-dispatch",
    namespace: str = "flux-system",
    *,
    provider_type: str = "githubdispatch",
    address: str | None = DEFAULT_SOURCE_REPOSITORY,
    secret_name: str | None = "github-token",
    suspend: bool = False,
) -> dict[str, Any]:
    """A Provider (v1beta3): spec only."""
    spec: dict[str, Any] = {"type": provider_type}
    if address is not None:
        spec["address"] = address
    if secret_name is not None:
        spec["secretRef"] = {"name": secret_name}
    if suspend:
        spec["suspend"] = True
    return {
        "apiVersion": NOTIFICATION_V1BETA3,
        "kind": "Provider",
        "metadata": _metadata("Provider", namespace, name, 1),
        "spec": spec,
    }


def helm_release(
    name: str,
    namespace: str = "flux-system",
    *,
    ready: bool | str = True,
    reason: str | None = None,
    message: str | None = None,
    chart: str = "podinfo",
    chart_version: str = "6.7.1",
    transition: Timestamp = DEFAULT_TIME,
    generation: int = 1,
) -> dict[str, Any]:
    """A HelmRelease (v2) as helm-controller's summarize leaves it: Ready mirrors Released,
    with upgrade.go's fmtUpgradeSuccess ("release ns/name.vN") or fmtUpgradeFailure ("release
    ns/name", then Helm's error: a wait for the release's resources that timed out)."""
    is_ready = ready is True or ready == "True"
    if is_ready:
        reason = reason or "UpgradeSucceeded"
        message = message or (
            f"Helm upgrade succeeded for release {namespace}/{name}.v3 with chart "
            f"{chart}@{chart_version}"
        )
    else:
        reason = reason or "UpgradeFailed"
        message = message or (
            f"Helm upgrade failed for release {namespace}/{name} with chart "
            f"{chart}@{chart_version}: context deadline exceeded"
        )
    # While it reconciles (Ready=Unknown) the last release attempt's Released is not known here.
    kinds = ("Ready",) if ready == "Unknown" else ("Ready", "Released")
    conditions = [
        condition(kind, ready, reason, message, at=transition, observed_generation=generation)
        for kind in kinds
    ]
    return {
        "apiVersion": HELM_RELEASE_V2,
        "kind": "HelmRelease",
        "metadata": {
            **_metadata("HelmRelease", namespace, name, generation),
            "finalizers": ["finalizers.fluxcd.io"],
        },
        "spec": {
            "interval": "30m",
            "chart": {
                "spec": {
                    "chart": chart,
                    "version": chart_version,
                    "sourceRef": {"kind": "HelmRepository", "name": chart},
                }
            },
        },
        "status": {
            "observedGeneration": generation,
            "conditions": conditions,
            "lastAttemptedRevision": chart_version,
            "lastAttemptedReleaseAction": "upgrade",
        },
    }
