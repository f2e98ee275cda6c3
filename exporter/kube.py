"""Reads the pipeline's Flux and canary-checker objects from one cluster.

This is the only module that talks to Kubernetes. Every cluster gets its own ApiClient built
from its own Configuration, so clusters never share credentials and the process-wide default
configuration is never touched. The parse functions at the bottom turn raw objects into
snapshot values without any I/O.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any, TypeVar

import urllib3
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
    InClusterConfigLoader,
)

from exporter import redact
from exporter.bounds import CHUNK, LIST_LIMIT, MANIFEST_LIMIT, POLL_TIMEOUTS, Deadline, read_limited
from exporter.config import ClusterConfig
from exporter.snapshot import (
    AlertData,
    CanaryCheck,
    CanaryData,
    ClusterData,
    ClusterWants,
    Condition,
    ErrorReason,
    EventSource,
    HelmReleaseStatus,
    HistoryEntry,
    KustomizationData,
    MalformedError,
    Missing,
    ObjectRef,
    OCIRepositoryData,
    ProviderData,
    SourceError,
    parse_timestamp,
)

T = TypeVar("T")
_MESSAGE_LIMIT = 300
_LIST_PAGE_SIZE = 500
_MAX_LIST_PAGES = 1000  # 500,000 HelmReleases: past that, a continue token that never ends
# Flux's revision of an OCI artifact: "<tag>@sha256:<hex>", or the bare digest for a digest ref.
_REVISION = re.compile(r"^(?:[^@\s]+@)?sha(?:256|384|512):[0-9a-f]{64,128}$")
# canary-checker's Uptime.String(): "10/12 (83.3%)", or "0/8 0%" when nothing passed.
_UPTIME = re.compile(r"^(\d+)/(\d+) (?:\(\d+(?:\.\d+)?%\)|0%)$")
# canary-checker's CanaryStatusCondition values, as a check result.
_CANARY_RESULTS = {"Passed": True, "Failed": False, "Invalid": False}
# Go's time.ParseDuration units, which @every takes.
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
# robfig/cron's fixed-period descriptors; @monthly and @yearly have no fixed period.
_CRON_DESCRIPTORS = {
    "@hourly": 3600.0,
    "@daily": 86400.0,
    "@midnight": 86400.0,
    "@weekly": 604800.0,
}
_WEEKDAYS = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
_WEEK_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class _Kind:
    group: str
    versions: tuple[str, ...]  # preferred first
    plural: str


_OCI_REPOSITORY = _Kind("source.toolkit.fluxcd.io", ("v1", "v1beta2"), "ocirepositories")
_KUSTOMIZATION = _Kind("kustomize.toolkit.fluxcd.io", ("v1",), "kustomizations")
_CANARY = _Kind("canaries.flanksource.com", ("v1",), "canaries")
_ALERT = _Kind("notification.toolkit.fluxcd.io", ("v1beta3",), "alerts")
_PROVIDER = _Kind("notification.toolkit.fluxcd.io", ("v1beta3",), "providers")
_HELM_RELEASE = _Kind("helm.toolkit.fluxcd.io", ("v2",), "helmreleases")


class KubeClient:
    """Polls one cluster. The ApiClient is built on the first poll and kept; a kubeconfig
    that cannot be loaded fails that poll only, so fixing the file heals the next one."""

    def __init__(
        self, cluster: ClusterConfig, timeout: float, wants: ClusterWants | None = None
    ) -> None:
        self._cluster = cluster
        self._timeout = timeout
        self._wants = wants or ClusterWants()
        self._api_client: ApiClient | None = None
        self._discovery = _DiscoveryCache()

    def poll(self, deadline: Deadline) -> ClusterData:
        return self.read(self._wants, deadline)

    def read(self, wants: ClusterWants, deadline: Deadline | None = None) -> ClusterData:
        """Everything `wants` names plus every HelmRelease's readiness; SourceError if
        the cluster cannot be read. Absent objects and CRDs are `Missing` values, not errors;
        an object of the wrong shape is None, and named in `malformed`."""
        deadline = deadline or Deadline.after(POLL_TIMEOUTS * self._timeout, 0.0)
        reader = _PollReader(
            CustomObjectsApi(self._connect()),
            _Budget(deadline, self._timeout),
            self._cluster.name,
            self._discovery,
        )
        data = ClusterData(
            oci_repositories=reader.read(
                _OCI_REPOSITORY, wants.oci_repositories, parse_oci_repository
            ),
            kustomizations=reader.read(_KUSTOMIZATION, wants.kustomizations, parse_kustomization),
            canaries=reader.read(_CANARY, wants.canaries, parse_canary),
            alerts=reader.read(_ALERT, wants.alerts, parse_alert),
            providers=reader.read(_PROVIDER, wants.providers, parse_provider),
            helm_releases=reader.helm_releases(),
        )
        return dataclasses.replace(data, malformed=tuple(reader.malformed))

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None

    def _connect(self) -> ApiClient:
        if self._api_client is None:
            self._api_client = _build_api_client(self._cluster)
        _register_credentials(self._api_client.configuration)
        return self._api_client


def _register_credentials(configuration: Configuration) -> None:
    """Every credential the kubeconfig gave (an exec plugin may refresh them between polls)."""
    for value in (configuration.api_key or {}).values():
        if isinstance(value, str):
            redact.register(value)
            redact.register(value.removeprefix("Bearer ").strip())
    if configuration.username and configuration.password:
        redact.register_basic(configuration.username, configuration.password)


@dataclass(frozen=True)
class _Budget:
    """One poll's deadline and the per-request timeout under it."""

    deadline: Deadline
    timeout: float

    def request(self, what: str) -> tuple[float, float]:
        """(connect, read) for urllib3, which bounds each read: the body is read under
        `read_limited`, which bounds the whole."""
        seconds = self.deadline.for_request(what, self.timeout)
        return (seconds, seconds)


def _fresh_configuration() -> Configuration:
    configuration = Configuration()
    # One attempt per request: the next poll is the retry, and a retried read timeout would
    # stretch a poll to several times the configured timeout.
    configuration.retries = 0
    return configuration


def _build_api_client(cluster: ClusterConfig) -> ApiClient:
    configuration = _fresh_configuration()
    try:
        if cluster.in_cluster:
            loader = InClusterConfigLoader(SERVICE_TOKEN_FILENAME, SERVICE_CERT_FILENAME)
            loader.load_and_set(configuration)
            return ApiClient(configuration)
        return new_client_from_config(
            config_file=str(cluster.kubeconfig),
            context=cluster.context,
            persist_config=False,
            client_configuration=configuration,
        )
    # The loaders raise anything from ConfigException to KeyError or a YAML error on a
    # malformed file; each means the same thing here.
    except Exception as error:
        # Unreachable rather than bad_response: no server answered, we cannot even address it.
        raise SourceError(ErrorReason.UNREACHABLE, _config_problem(cluster, error)) from None


def _config_problem(cluster: ClusterConfig, error: Exception) -> str:
    if cluster.in_cluster:
        where = "the in-cluster service account config"
    else:
        where = f"kubeconfig {cluster.kubeconfig}"
        if cluster.context:
            where += f" (context {cluster.context!r})"
    # Only the first line: YAML errors can go on to quote the offending line of the file.
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return _truncate(
        f"cluster {cluster.name}: cannot load {where}: {type(error).__name__}: {detail}"
    )


class _DiscoveryCache:
    """Group/versions known to serve the plurals we read, kept across polls: rediscovering
    every group on every poll would double a steady poll's requests. Only a hit is kept, so a
    CRD installed later is found on the next poll; a GET answering that the resource is gone
    drops the entry."""

    def __init__(self) -> None:
        self._plurals: dict[tuple[str, str], frozenset[str]] = {}

    def serves(self, key: tuple[str, str], plural: str) -> bool:
        return plural in self._plurals.get(key, frozenset())

    def put(self, key: tuple[str, str], plurals: frozenset[str]) -> None:
        self._plurals[key] = plurals

    def forget(self, key: tuple[str, str]) -> None:
        self._plurals.pop(key, None)


class _PollReader:
    """One poll of one cluster. Discovery is what tells an uninstalled CRD from an absent
    object: both are 404s on a GET."""

    def __init__(
        self, api: CustomObjectsApi, budget: _Budget, cluster: str, discovery: _DiscoveryCache
    ) -> None:
        self._api = api
        self._budget = budget
        self._cluster = cluster
        self._discovery = discovery
        self.malformed: list[str] = []

    def read(
        self,
        kind: _Kind,
        refs: Iterable[ObjectRef],
        parse: Callable[[Mapping[str, Any]], T],
    ) -> dict[ObjectRef, T | Missing | None]:
        refs = sorted(refs, key=lambda ref: (ref.namespace, ref.name))
        if not refs:
            return {}
        version = self._served_version(kind)
        if version is None:
            return dict.fromkeys(refs, Missing.CRD_MISSING)
        found: dict[ObjectRef, T | Missing | None] = {}
        for ref in refs:
            raw = self._get(kind, version, ref)
            found[ref] = raw if isinstance(raw, Missing) else self._parse(kind, parse, raw, ref)
        return found

    def helm_releases(self) -> tuple[HelmReleaseStatus, ...] | Missing:
        version = self._served_version(_HELM_RELEASE)
        if version is None:
            return Missing.CRD_MISSING
        # Each page is parsed as it arrives, so at most one page of raw objects is held.
        releases: list[HelmReleaseStatus] = []
        page_token: str | None = None
        seen: set[str] = set()
        while True:
            page = self._list(_HELM_RELEASE, version, page_token)
            if isinstance(page, Missing):
                return page
            releases.extend(parse_helm_releases(_list_field(page, "items")))
            page_token = _text(_mapping(page, "metadata").get("continue"))
            if not page_token:
                return tuple(sorted(releases, key=lambda r: (r.namespace, r.name)))
            if page_token in seen or len(seen) >= _MAX_LIST_PAGES:
                message = f"cluster {self._cluster}: the HelmRelease list's pages do not end"
                raise SourceError(ErrorReason.BAD_RESPONSE, message)
            seen.add(page_token)

    def _served_version(self, kind: _Kind) -> str | None:
        for version in kind.versions:
            key = (kind.group, version)
            if not self._discovery.serves(key, kind.plural):
                self._discovery.put(key, self._discover(kind.group, version))
            if self._discovery.serves(key, kind.plural):
                return version
        return None

    def _discover(self, group: str, version: str) -> frozenset[str]:
        what = f"discovery of {group}/{version}"
        try:
            with self._translated(what):
                found = self._api.get_api_resources(
                    group, version, _request_timeout=self._budget.request(what)
                )
        except ApiException:  # only a 404 gets past _translated: the group/version is not served
            return frozenset()
        return frozenset(resource.name for resource in found.resources or ())

    def _get(self, kind: _Kind, version: str, ref: ObjectRef) -> Any:
        what = f"get {kind.plural}.{kind.group}/{version} {ref.namespace}/{ref.name}"
        try:
            with self._translated(what):
                timeouts = self._budget.request(what)
                response = self._api.get_namespaced_custom_object(
                    kind.group,
                    version,
                    ref.namespace,
                    kind.plural,
                    ref.name,
                    _request_timeout=timeouts,
                    _preload_content=False,
                )
                return self._json(response, MANIFEST_LIMIT, timeouts[1], what)
        except ApiException as error:  # a 404
            missing = missing_from_not_found(error.body)
            if missing is Missing.CRD_MISSING:
                self._discovery.forget((kind.group, version))
            return missing

    def _list(self, kind: _Kind, version: str, page_token: str | None) -> Any:
        what = f"list {kind.plural}.{kind.group}/{version} in all namespaces"
        try:
            with self._translated(what):
                timeouts = self._budget.request(what)
                response = self._api.list_cluster_custom_object(
                    kind.group,
                    version,
                    kind.plural,
                    limit=_LIST_PAGE_SIZE,
                    _continue=page_token,
                    _request_timeout=timeouts,
                    _preload_content=False,
                )
                page = self._json(response, LIST_LIMIT, timeouts[1], what)
        except ApiException:  # a 404: the CRD went away since discovery
            return Missing.CRD_MISSING
        if not isinstance(page, Mapping):
            raise SourceError(
                ErrorReason.BAD_RESPONSE,
                f"cluster {self._cluster}: {what}: the list is not an object",
            )
        return page

    def _json(self, response: Any, limit: int, seconds: float, what: str) -> Any:
        """The body of an unpreloaded urllib3 response, within `limit` bytes and `seconds`."""
        prefix = f"cluster {self._cluster}: {what}"
        try:
            body = read_limited(_chunks(response), limit, time.monotonic() + seconds, prefix)
        finally:
            response.release_conn()
        return json.loads(body)

    def _parse(
        self, kind: _Kind, parse: Callable[[Mapping[str, Any]], T], raw: Any, ref: ObjectRef
    ) -> T | None:
        """The parsed object, or None (and a note in `malformed`) when it has the wrong shape:
        that object's facts are unknown, and the cluster's other objects still count."""
        try:
            if not isinstance(raw, Mapping):
                raise MalformedError("the body is not an object")
            return parse(raw)
        except MalformedError as error:
            self.malformed.append(
                f"cluster {self._cluster}: {kind.plural} {ref.namespace}/{ref.name}: {error}"
            )
            return None

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turns every failure except a 404 into SourceError; 404s are for the caller."""
        prefix = f"cluster {self._cluster}: {what}"
        try:
            yield
        except ApiException as error:
            if error.status == 404:
                raise
            raise api_error(prefix, error) from None
        except urllib3.exceptions.HTTPError as error:
            raise connection_error(prefix, error) from None
        except ValueError as error:  # undecodable JSON, or a discovery list that fails its schema
            message = f"{prefix}: malformed response ({type(error).__name__})"
            raise SourceError(ErrorReason.BAD_RESPONSE, message) from None


def _chunks(response: Any) -> Iterator[bytes]:
    """What has arrived, a chunk at a time: read1 returns as soon as any bytes are there, so
    a server dripping a byte at a time meets the deadline check between chunks."""
    while chunk := response.read1(CHUNK):
        yield chunk


# --- error mapping (pure) -----------------------------------------------------------------


def _truncate(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _status_body(body: str | None) -> Mapping[str, Any]:
    try:
        parsed = json.loads(body or "")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, Mapping) else {}


def missing_from_not_found(body: str | None) -> Missing:
    """A 404 for an object names it in the Status details; the apiserver's not-found handler
    (no such group, version or resource) answers with no details at all."""
    details = _mapping(_status_body(body), "details")
    return Missing.NOT_FOUND if details.get("name") else Missing.CRD_MISSING


def _reason_for_status(status: int) -> ErrorReason:
    if status == 401:
        return ErrorReason.UNAUTHORIZED
    if status == 403:
        return ErrorReason.FORBIDDEN
    if status == 429:
        return ErrorReason.RATE_LIMITED
    if 500 <= status <= 599:
        return ErrorReason.SERVER_ERROR
    return ErrorReason.BAD_RESPONSE


def api_error(prefix: str, error: ApiException) -> SourceError:
    """An HTTP error answer (or the client's status-0 failure) as a SourceError. The message
    comes from the Status body or the client's reason, never from request headers."""
    status = error.status or 0
    if status == 0:
        # The client reports TLS failures and bodies it cannot decode as status 0.
        reason_text = str(error.reason or "")
        bad_body = reason_text.startswith("Unsupported content type")
        reason = ErrorReason.BAD_RESPONSE if bad_body else ErrorReason.UNREACHABLE
        return SourceError(reason, _truncate(f"{prefix}: {' '.join(reason_text.split())}"))
    detail = _text(_status_body(error.body).get("message")) or str(error.reason or "")
    return SourceError(_reason_for_status(status), _truncate(f"{prefix}: HTTP {status}: {detail}"))


def connection_error(prefix: str, error: urllib3.exceptions.HTTPError) -> SourceError:
    cause: Exception = error
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        cause = error.reason
    # urllib3 files a refused connection under ConnectTimeoutError, but it is no timeout.
    timed_out = isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
        cause, urllib3.exceptions.NewConnectionError
    )
    reason = ErrorReason.TIMEOUT if timed_out else ErrorReason.UNREACHABLE
    return SourceError(reason, _truncate(f"{prefix}: {type(cause).__name__}: {cause}"))


# --- parsing (pure) -----------------------------------------------------------------------


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def _list_field(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _integer(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _suspended(raw: Mapping[str, Any]) -> bool:
    return _mapping(raw, "spec").get("suspend") is True


def parse_condition(raw: Any) -> Condition | None:
    if not isinstance(raw, Mapping) or not _text(raw.get("type")):
        return None
    return Condition(
        type=raw["type"],
        status=_text(raw.get("status")) or "Unknown",
        reason=_text(raw.get("reason")) or "",
        message=_text(raw.get("message")) or "",
    )


def _status(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The status a controller wrote; MalformedError when there is none yet or it is no
    object, since then nothing can be said about the object's state."""
    status = raw.get("status")
    if not isinstance(status, Mapping):
        raise MalformedError("has no status" if status is None else "status is not an object")
    conditions = status.get("conditions")
    if conditions is not None and not isinstance(conditions, list):
        raise MalformedError("status.conditions is not a list")
    return status


def _revision(status: Mapping[str, Any], key: str) -> str | None:
    value = status.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _REVISION.match(value):
        raise MalformedError(f"status {key} is not <tag>@sha256:<hex>")
    return value


def ready_condition(status: Mapping[str, Any]) -> Condition | None:
    for raw in _list_field(status, "conditions"):
        parsed = parse_condition(raw)
        if parsed is not None and parsed.type == "Ready":
            return parsed
    return None


def parse_oci_repository(raw: Mapping[str, Any]) -> OCIRepositoryData:
    spec, status = _mapping(raw, "spec"), _status(raw)
    ref = _mapping(spec, "ref")
    artifact = _mapping(status, "artifact")
    return OCIRepositoryData(
        api_version=_text(raw.get("apiVersion")) or "",
        url=_text(spec.get("url")) or "",
        ref_semver=_text(ref.get("semver")),
        ref_semver_filter=_text(ref.get("semverFilter")),
        ref_tag=_text(ref.get("tag")),
        ref_digest=_text(ref.get("digest")),
        suspended=_suspended(raw),
        ready=ready_condition(status),
        artifact_revision=_revision(artifact, "revision"),
        artifact_last_update=parse_timestamp(_text(artifact.get("lastUpdateTime"))),
    )


def parse_history_entry(raw: Any) -> HistoryEntry | None:
    """None for an entry without metadata.revision: it cannot be matched to an artifact."""
    if not isinstance(raw, Mapping):
        return None
    revision = _text(_mapping(raw, "metadata").get("revision"))
    if revision is None:
        return None
    return HistoryEntry(
        revision=revision,
        first_reconciled=parse_timestamp(_text(raw.get("firstReconciled"))),
        last_reconciled=parse_timestamp(_text(raw.get("lastReconciled"))),
        last_status=_text(raw.get("lastReconciledStatus")) or "",
    )


def parse_kustomization(raw: Mapping[str, Any]) -> KustomizationData:
    status = _status(raw)
    history = (parse_history_entry(entry) for entry in _list_field(status, "history"))
    return KustomizationData(
        suspended=_suspended(raw),
        ready=ready_condition(status),
        last_applied_revision=_revision(status, "lastAppliedRevision"),
        history=tuple(entry for entry in history if entry is not None),
    )


def parse_uptime(text: Any) -> tuple[int | None, int | None]:
    """(passed, failed) in the rolling hour; (None, None) when canary-checker has no data,
    which it writes as "" (or, since the field is omitempty, leaves out)."""
    match = _UPTIME.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None, None
    passed, total = int(match.group(1)), int(match.group(2))
    return passed, max(total - passed, 0)


def check_health(
    passed: int | None, failed: int | None, error_message: str | None, sole_result: bool | None
) -> bool | None:
    """Whether a check's latest result passed, from its own checkStatus entry.

    canary-checker's reporter writes only uptime1h, latency1h and lastTransitionedTime there
    (errorMessage exists in the CRD type and is honoured when set). The latest result is
    counted in uptime1h, so: no data is None; no failure in the hour means it passed; no pass
    in the hour means it failed. A mixed hour cannot tell, unless the canary has this one check:
    the canary's status is the result its reporter handled last, which is then this check's.
    Otherwise it is None, never a neighbour's result.
    """
    if error_message:
        return False
    if passed is None or failed is None:
        return None
    if failed == 0:
        return True
    if passed == 0:
        return False
    return sole_result


def parse_canary(raw: Mapping[str, Any]) -> CanaryData:
    """The checks named in status.checks ({name: uuid}), read from status.checkStatus, which
    canary-checker keys by that UUID."""
    status = _mapping(raw, "status")
    ids = _mapping(status, "checks")
    by_id = _mapping(status, "checkStatus")
    names = sorted(key for key in ids if isinstance(key, str))
    result = _CANARY_RESULTS.get(_text(status.get("status")) or "")
    sole_result = result if len(names) == 1 else None
    last_check = parse_timestamp(_text(status.get("lastCheck")))
    checks = tuple(
        _parse_check(name, by_id.get(ids[name]), sole_result, last_check) for name in names
    )
    return CanaryData(
        checks=checks,
        last_check=last_check,
        interval_seconds=canary_interval(_mapping(raw, "spec")),
    )


def _parse_check(
    name: str, entry: Any, sole_result: bool | None, canary_last_check: float | None
) -> CanaryCheck:
    if not isinstance(entry, Mapping):
        return CanaryCheck(name, None, None, None, None, "")
    passed, failed = parse_uptime(entry.get("uptime1h"))
    error_message = _text(entry.get("errorMessage"))
    # The reporter replaces checkStatus wholesale after each run, so an entry was in the
    # canary's latest run; that run's time stands in when the entry has none of its own.
    last_check = parse_timestamp(_text(entry.get("lastCheck"))) or canary_last_check
    return CanaryCheck(
        name=name,
        healthy=check_health(passed, failed, error_message, sole_result),
        passed_1h=passed,
        failed_1h=failed,
        last_check=last_check,
        message=error_message or _text(entry.get("message")) or "",
    )


def canary_interval(spec: Mapping[str, Any]) -> float | None:
    """Seconds between runs, as canary-checker's GetSchedule reads the spec: schedule first,
    then the deprecated interval in whole seconds. For a cron, the longest gap between runs."""
    schedule = _text(spec.get("schedule"))
    if schedule is not None:
        return schedule_period(schedule.strip())
    interval = _integer(spec.get("interval"))
    return float(interval) if interval > 0 else None


def schedule_period(schedule: str) -> float | None:
    """None for what robfig/cron accepts but has no bounded weekly period (a day-of-month or
    month field, @monthly, @yearly) and for what it rejects."""
    if schedule.startswith("@every "):
        return go_duration(schedule.removeprefix("@every ").strip())
    if schedule.startswith("@"):
        return _CRON_DESCRIPTORS.get(schedule)
    return _cron_period(schedule)


def go_duration(text: str) -> float | None:
    """time.ParseDuration for the positive durations @every takes: "1m30s", "1.5h"."""
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    seconds = sum(float(number) * _GO_UNITS[unit] for number, unit in parts)
    return seconds if seconds > 0 else None


@lru_cache(maxsize=64)
def _cron_period(schedule: str) -> float | None:
    fields = schedule.split()
    if fields and fields[0].startswith(("CRON_TZ=", "TZ=")):
        fields = fields[1:]  # the zone moves the runs, not the gaps between them
    if len(fields) != 5 or fields[2] not in ("*", "?") or fields[3] not in ("*", "?"):
        return None
    minutes = _cron_field(fields[0], 0, 59)
    hours = _cron_field(fields[1], 0, 23)
    weekdays = _cron_field(fields[4].lower(), 0, 6, _WEEKDAYS)
    if not (minutes and hours and weekdays):
        return None
    runs = sorted(d * 1440 + h * 60 + m for d in weekdays for h in hours for m in minutes)
    gaps = [later - earlier for earlier, later in pairwise(runs)]
    gaps.append(runs[0] + _WEEK_MINUTES - runs[-1])  # the gap across the week's end
    return 60.0 * max(gaps)


def _cron_field(
    text: str, low: int, high: int, names: Mapping[str, int] | None = None
) -> frozenset[int] | None:
    """One cron field's values (lists, ranges, steps, names); None when it is malformed."""
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        if not step_text.isdigit() and step_text:
            return None
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            first, last = low, high
        else:
            start, dash, stop = span.partition("-")
            first_value = _cron_value(start, names)
            last_value = _cron_value(stop, names) if dash else (high if step_text else first_value)
            if first_value is None or last_value is None:
                return None
            first, last = first_value, last_value
        if step < 1 or not low <= first <= last <= high:
            return None
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _cron_value(text: str, names: Mapping[str, int] | None) -> int | None:
    if text.isdigit():
        return int(text)
    return names.get(text) if names else None


def parse_alert(raw: Mapping[str, Any]) -> AlertData:
    spec = _mapping(raw, "spec")
    sources = []
    for source in _list_field(spec, "eventSources"):
        if isinstance(source, Mapping):
            sources.append(
                EventSource(
                    kind=_text(source.get("kind")) or "",
                    name=_text(source.get("name")) or "",
                    namespace=_text(source.get("namespace")),
                )
            )
    return AlertData(
        provider_name=_text(_mapping(spec, "providerRef").get("name")) or "",
        # The CRD defaults eventSeverity to info.
        event_severity=_text(spec.get("eventSeverity")) or "info",
        event_sources=tuple(sources),
        inclusion_list=tuple(p for p in _list_field(spec, "inclusionList") if _text(p)),
        exclusion_list=tuple(p for p in _list_field(spec, "exclusionList") if _text(p)),
        suspended=_suspended(raw),
    )


def parse_provider(raw: Mapping[str, Any]) -> ProviderData:
    spec = _mapping(raw, "spec")
    return ProviderData(
        type=_text(spec.get("type")) or "",
        secret_name=_text(_mapping(spec, "secretRef").get("name")),
        suspended=_suspended(raw),
    )


def parse_helm_releases(items: Iterable[Any]) -> Iterator[HelmReleaseStatus]:
    for item in items:
        if isinstance(item, Mapping):
            yield parse_helm_release(item)


def parse_helm_release(raw: Mapping[str, Any]) -> HelmReleaseStatus:
    """Its Ready condition as helm-controller's summarize writes it: False with the failed
    action's reason (UpgradeFailed, InstallFailed, ...), Unknown while it reconciles."""
    metadata = _mapping(raw, "metadata")
    ready = ready_condition(_mapping(raw, "status"))
    known = ready is not None and ready.status in ("True", "False")
    return HelmReleaseStatus(
        namespace=_text(metadata.get("namespace")) or "",
        name=_text(metadata.get("name")) or "",
        ready=ready.is_true if known and ready is not None else None,
        reason=ready.reason if ready is not None else "",
        message=_truncate(ready.message) if ready is not None else "",
    )
