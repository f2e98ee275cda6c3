"""What the sources returned on one poll: plain, immutable data with no behaviour.

The clients (registry, kube, github) build these values; the model reads them. Times are
Unix epoch seconds as floats, always taken from the source itself, never from our clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from exporter.redact import redact


class ErrorReason(StrEnum):
    """Why a source poll failed; the label values of the errors counter."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"
    TOO_LARGE = "too_large"  # a response over its size limit
    # A bug of ours while polling, not a fault of the source: logged with its traceback,
    # counted, and polling goes on.
    INTERNAL = "internal"


class SourceError(Exception):
    """A source could not be polled. Its message is redacted here, whoever built it."""

    def __init__(self, reason: ErrorReason, message: str) -> None:
        super().__init__(redact(message))
        self.reason = reason


def parse_timestamp(text: str | None) -> float | None:
    """RFC 3339 (as Kubernetes, GitHub and OCI annotations write it) to epoch seconds."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --- OCI registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """One manifest in the registry with every tag that points at it."""

    digest: str  # sha256:<hex>, the manifest digest
    tags: tuple[str, ...]
    created: float | None  # org.opencontainers.image.created; None if absent or reproducible
    revision: str | None  # org.opencontainers.image.revision, e.g. main@sha1:<40hex>
    source: str | None  # org.opencontainers.image.source


@dataclass(frozen=True)
class RegistryData:
    repository: str  # e.g. ghcr.io/owner/homelab/platform
    artifacts: tuple[Artifact, ...]
    tag_count: int  # every tag listed, recognised or not
    ignored_tags: int  # tags that match none of the pipeline's patterns


# --- Kubernetes ---------------------------------------------------------------------------


class Missing(StrEnum):
    """Why an object we expected is not there. A finding, not an error."""

    NOT_FOUND = "not_found"
    CRD_MISSING = "crd_missing"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str

    @property
    def is_true(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class OCIRepositoryData:
    api_version: str  # source.toolkit.fluxcd.io/v1 or .../v1beta2
    url: str
    ref_semver: str | None
    ref_semver_filter: str | None
    ref_tag: str | None
    ref_digest: str | None
    suspended: bool
    ready: Condition | None
    artifact_revision: str | None  # "<tag>@sha256:<hex>" or bare "sha256:<hex>"
    artifact_last_update: float | None


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of Kustomization .status.history (Flux 2.7+), newest first."""

    revision: str  # metadata.revision; the entry's own digest is of the built manifests
    first_reconciled: float | None
    last_reconciled: float | None
    last_status: str  # lastReconciledStatus, e.g. ReconciliationSucceeded


@dataclass(frozen=True)
class KustomizationData:
    suspended: bool
    ready: Condition | None
    last_applied_revision: str | None
    history: tuple[HistoryEntry, ...]  # empty before Flux 2.7


@dataclass(frozen=True)
class CanaryCheck:
    name: str
    healthy: bool | None  # None when canary-checker has no result for it yet
    passed_1h: int | None  # from uptime1h "10/10 (100.0%)"; None when "" (no data)
    failed_1h: int | None
    last_check: float | None
    message: str


@dataclass(frozen=True)
class CanaryData:
    checks: tuple[CanaryCheck, ...]
    last_check: float | None = None  # status.lastCheck: when canary-checker last reported
    # spec.schedule (or the deprecated spec.interval) as a period; None when it has none
    # (canary-checker then never runs it) or a cron whose period is irregular.
    interval_seconds: float | None = None


@dataclass(frozen=True)
class EventSource:
    kind: str
    name: str
    namespace: str | None


@dataclass(frozen=True)
class AlertData:
    provider_name: str
    event_severity: str
    event_sources: tuple[EventSource, ...]
    inclusion_list: tuple[str, ...]
    exclusion_list: tuple[str, ...]
    suspended: bool


@dataclass(frozen=True)
class ProviderData:
    type: str
    secret_name: str | None
    suspended: bool


@dataclass(frozen=True)
class HelmReleaseStatus:
    """One HelmRelease's Ready condition; only these fields are kept, to bound memory."""

    namespace: str
    name: str
    ready: bool | None  # None while Ready is Unknown (reconciling) or not written yet
    reason: str
    message: str


@dataclass(frozen=True)
class HelmReleaseCounts:
    """A cluster's HelmReleases counted from its `HelmReleaseStatus` tuple."""

    ready: int
    total: int


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class ClusterWants:
    """The objects one cluster is asked for, gathered from every pipeline that uses it."""

    oci_repositories: frozenset[ObjectRef] = frozenset()
    kustomizations: frozenset[ObjectRef] = frozenset()
    canaries: frozenset[ObjectRef] = frozenset()
    alerts: frozenset[ObjectRef] = frozenset()
    providers: frozenset[ObjectRef] = frozenset()


@dataclass(frozen=True)
class ClusterData:
    """Each wanted object: its data, why it is absent, or None when it is there but has not
    the shape we read (its facts are then unknown; `malformed` says what was wrong)."""

    oci_repositories: dict[ObjectRef, OCIRepositoryData | Missing | None] = field(
        default_factory=dict
    )
    kustomizations: dict[ObjectRef, KustomizationData | Missing | None] = field(
        default_factory=dict
    )
    canaries: dict[ObjectRef, CanaryData | Missing | None] = field(default_factory=dict)
    alerts: dict[ObjectRef, AlertData | Missing | None] = field(default_factory=dict)
    providers: dict[ObjectRef, ProviderData | Missing | None] = field(default_factory=dict)
    # Every HelmRelease in the cluster, sorted by namespace and name.
    helm_releases: tuple[HelmReleaseStatus, ...] | Missing = Missing.CRD_MISSING
    malformed: tuple[str, ...] = ()


class MalformedError(ValueError):
    """An upstream object that has not the shape we need; the message says which part."""


# --- GitHub -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    sha: str  # 40 hex
    date: float | None  # committer date
    message: str = ""  # the full commit message: [skip ci] and skip-checks trailers live here


@dataclass(frozen=True)
class WorkflowRun:
    id: int
    head_sha: str
    event: str
    status: str  # queued | in_progress | completed | ...
    conclusion: str | None  # success | failure | cancelled | skipped | ... | None while running
    created_at: float | None
    updated_at: float | None
    display_title: str = ""  # the commit's subject for a push, or the workflow's run-name


@dataclass(frozen=True)
class CommitStatus:
    context: str
    state: str  # error | failure | pending | success
    created_at: float | None


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset: float  # epoch seconds


@dataclass(frozen=True)
class GitHubData:
    """One pipeline's view of its repository."""

    head_commit: Commit | None  # newest commit on the branch touching watch_path
    commits: tuple[Commit, ...]  # the path-filtered commits read, newest first
    build_runs: tuple[WorkflowRun, ...]  # newest first; () when the workflow is not found
    build_workflow_found: bool  # False when GitHub answered 404 for its runs
    promote_runs: tuple[WorkflowRun, ...]  # newest first; () without a tag workflow
    promote_workflow_found: bool | None  # None when the pipeline has no tag workflow
    statuses: dict[str, tuple[CommitStatus, ...]]  # by commit sha: head and newest build
    rate_limit: RateLimit | None


# --- The whole poll -----------------------------------------------------------------------


@dataclass(frozen=True)
class SourceStatus:
    kind: str  # registry | cluster | github
    name: str
    up: bool
    duration_seconds: float
    last_success: float | None
    error: ErrorReason | None
    # When the last poll that ran to completion (up or down) started; it stops advancing
    # while a poll hangs past its deadline.
    last_attempt: float | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything one poll saw. A source that is down maps to None."""

    taken_at: float
    registries: dict[str, RegistryData | None]  # keyed by pipeline name
    clusters: dict[str, ClusterData | None]  # keyed by cluster name
    github: dict[str, GitHubData | None]  # by pipeline: None when its GitHub source is down
    sources: tuple[SourceStatus, ...]
    github_rate_limit: RateLimit | None = None  # last seen, kept while GitHub is down
