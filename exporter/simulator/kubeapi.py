"""A fake Kubernetes API server: the discovery and custom-object paths the exporter reads.

It answers the way a real apiserver with CRDs installed does: discovery documents list the
plurals each group/version serves, objects are served through every served version of their
CRD, and errors are `Status` bodies. An unknown object is a 404 naming it in `details`; an
unknown group, version or resource is the apiserver's generic 404 ("the server could not find
the requested resource", no details) from its not-found handler. Tests and the simulator pick
the installed CRDs (`FLUX_2_5`, `FLUX_2_8`, `CANARY_CHECKER`...) and can force 401, RBAC 403,
429, 5xx, slowness, or take the server down and bring it back on the same port.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from exporter.simulator.loopback import LoopbackServer, QuietRequestHandler

SERVICE_ACCOUNT = "system:serviceaccount:monitoring:promotion-exporter"
_VERSION_PRIORITY = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


@dataclass(frozen=True)
class CustomResource:
    """One served version of a CRD, as its discovery entry describes it."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}"

    def discovery(self) -> list[dict[str, Any]]:
        verbs = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "storageVersionHash": self.kind[:8].ljust(8, "x"),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.group.endswith("fluxcd.io"):
            entry["categories"] = ["all", "flux"]
        status = {
            "name": f"{self.plural}/status",
            "singularName": "",
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["get", "patch", "update"],
        }
        return [entry, status]


def _source(version: str, plural: str, kind: str, singular: str, short: str) -> CustomResource:
    return CustomResource("source.toolkit.fluxcd.io", version, plural, kind, singular, (short,))


GIT_REPOSITORY_V1 = _source("v1", "gitrepositories", "GitRepository", "gitrepository", "gitrepo")
OCI_REPOSITORY_V1 = _source("v1", "ocirepositories", "OCIRepository", "ocirepository", "ocirepo")
OCI_REPOSITORY_V1BETA2 = _source(
    "v1beta2", "ocirepositories", "OCIRepository", "ocirepository", "ocirepo"
)
HELM_REPOSITORY_V1 = _source(
    "v1", "helmrepositories", "HelmRepository", "helmrepository", "helmrepo"
)
KUSTOMIZATION_V1 = CustomResource(
    "kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization", "kustomization", ("ks",)
)
HELM_RELEASE_V2 = CustomResource(
    "helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease", "helmrelease", ("hr",)
)
ALERT_V1BETA3 = CustomResource(
    "notification.toolkit.fluxcd.io", "v1beta3", "alerts", "Alert", "alert"
)
PROVIDER_V1BETA3 = CustomResource(
    "notification.toolkit.fluxcd.io", "v1beta3", "providers", "Provider", "provider"
)
CANARY_V1 = CustomResource("canaries.flanksource.com", "v1", "canaries", "Canary", "canary")

_FLUX_COMMON = (
    GIT_REPOSITORY_V1,
    HELM_REPOSITORY_V1,
    KUSTOMIZATION_V1,
    HELM_RELEASE_V2,
    ALERT_V1BETA3,
    PROVIDER_V1BETA3,
)
# Flux 2.5: GitRepository is already v1 (so source.toolkit.fluxcd.io/v1 exists) but
# OCIRepository is only v1beta2. Flux 2.6 and 2.7 serve both; 2.8 removed v1beta2.
FLUX_2_5 = (*_FLUX_COMMON, OCI_REPOSITORY_V1BETA2)
FLUX_2_6 = (*_FLUX_COMMON, OCI_REPOSITORY_V1, OCI_REPOSITORY_V1BETA2)
FLUX_2_8 = (*_FLUX_COMMON, OCI_REPOSITORY_V1)
CANARY_CHECKER = (CANARY_V1,)
DEFAULT_RESOURCES = (*FLUX_2_8, *CANARY_CHECKER)


def _status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


# The apiserver's not-found handler answers this for any path no API serves.
_UNKNOWN_RESOURCE = _status(404, "NotFound", "the server could not find the requested resource")
_FORCED = {
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: etcdserver: request timed out"),
    502: ("InternalError", "Internal error occurred: bad gateway"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


def _version_rank(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA over beta over alpha, then by number."""
    match = _VERSION_PRIORITY.match(version)
    if not match:
        return (0, 0, 0)
    stability = {None: 3, "beta": 2, "alpha": 1}[match.group(2)]
    return (stability, int(match.group(1)), int(match.group(3) or 0))


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it: whether it carried the right token, never the token."""

    method: str
    path: str
    authorized: bool


@dataclass(frozen=True)
class _Reply:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None  # sent instead of the JSON body


class FakeKubeAPI(LoopbackServer[RecordedRequest]):
    """A threaded apiserver on 127.0.0.1 with an in-memory object store."""

    def __init__(
        self,
        resources: Iterable[CustomResource] = DEFAULT_RESOURCES,
        *,
        token: str | None = "fake-token",
    ) -> None:
        super().__init__()
        self.token = token
        self._lock = threading.Lock()
        self._resources: tuple[CustomResource, ...] = tuple(resources)
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._resource_version = 1000
        self._forbidden: set[tuple[str, str]] = set()
        self._forced_status: int | None = None
        self._delay = 0.0
        self._garbage = False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    # --- state --------------------------------------------------------------------------

    def set_resources(self, resources: Iterable[CustomResource]) -> None:
        """Install exactly these CRD versions; objects of kinds no longer served are hidden."""
        with self._lock:
            self._resources = tuple(resources)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object; returns the stored copy with its resourceVersion."""
        group = obj["apiVersion"].rpartition("/")[0]
        stored = copy.deepcopy(obj)
        metadata = stored.setdefault("metadata", {})
        with self._lock:
            if not any(r.group == group and r.kind == obj["kind"] for r in self._resources):
                raise ValueError(f"no CRD for {obj['kind']} in {group} is installed here")
            self._resource_version += 1
            metadata["resourceVersion"] = str(self._resource_version)
            metadata.setdefault("namespace", "default")
            metadata.setdefault("generation", 1)
            key = (group, obj["kind"], metadata["namespace"], metadata["name"])
            self._objects[key] = stored
        return copy.deepcopy(stored)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        group = api_version.rpartition("/")[0]
        with self._lock:
            self._resource_version += 1
            self._objects.pop((group, kind, namespace, name), None)

    def forbid(self, group: str, plural: str) -> None:
        """Answer 403 for this resource, as RBAC does when the exporter's role lacks it."""
        with self._lock:
            self._forbidden.add((group, plural))

    def allow(self, group: str, plural: str) -> None:
        with self._lock:
            self._forbidden.discard((group, plural))

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this error status (429, 500, 502, 503, 504); None stops."""
        if status is not None and status not in _FORCED:
            raise ValueError(f"cannot force status {status}; choose one of {sorted(_FORCED)}")
        with self._lock:
            self._forced_status = status

    def serve_garbage(self, garbage: bool = True) -> None:
        """Answer 200 with a body that is not JSON, as a broken proxy in front might."""
        with self._lock:
            self._garbage = garbage

    def slow_down(self, seconds: float) -> None:
        """Hold every response this long (stop() releases held requests at once)."""
        with self._lock:
            self._delay = seconds

    # --- kubeconfig ---------------------------------------------------------------------

    def kubeconfig(self, context_name: str = "fake", token: str | None = None) -> dict[str, Any]:
        """A kubeconfig document for this server; `token` overrides the server's own."""
        user: dict[str, Any] = {}
        if (token or self.token) is not None:
            user["token"] = token or self.token
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context_name, "cluster": {"server": self.url}}],
            "users": [{"name": context_name, "user": user}],
            "contexts": [
                {"name": context_name, "context": {"cluster": context_name, "user": context_name}}
            ],
            "current-context": context_name,
        }

    def write_kubeconfig(
        self, path: str | Path, context_name: str = "fake", token: str | None = None
    ) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.kubeconfig(context_name, token), sort_keys=False))
        return path

    # --- request handling ---------------------------------------------------------------

    def handle(self, method: str, target: str, authorization: str | None) -> _Reply:
        url = urlsplit(target)
        authorized = self.token is None or authorization == f"Bearer {self.token}"
        with self._lock:
            self._record(RecordedRequest(method, url.path, authorized))
            delay, forced, garbage = self._delay, self._forced_status, self._garbage
        if delay and self._stopping.wait(delay):
            return _Reply(503, _status(503, "ServiceUnavailable", "apiserver is shutting down"))
        if not authorized:
            return _Reply(401, _status(401, "Unauthorized", "Unauthorized"))
        if forced is not None:
            reason, message = _FORCED[forced]
            headers = (("Retry-After", "1"),) if forced == 429 else ()
            details = {"retryAfterSeconds": 1} if forced == 429 else None
            return _Reply(forced, _status(forced, reason, message, details), headers)
        if garbage:
            return _Reply(200, {}, raw=b"<html><body>502 Bad Gateway</body></html>")
        if method != "GET":
            return _Reply(405, _status(405, "MethodNotAllowed", f"{method} is not supported"))
        with self._lock:
            return self._route(url.path.rstrip("/").split("/")[1:], parse_qs(url.query))

    def _route(self, parts: list[str], query: dict[str, list[str]]) -> _Reply:
        if parts == ["api"]:
            return _Reply(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}
                    ],
                },
            )
        if not parts or parts[0] != "apis":
            return _Reply(404, _UNKNOWN_RESOURCE)
        parts = parts[1:]
        if not parts:
            return _Reply(200, self._group_list())
        if len(parts) == 1:
            group_list = self._group(parts[0])
            return _Reply(200, group_list) if group_list else _Reply(404, _UNKNOWN_RESOURCE)
        group, version, rest = parts[0], parts[1], parts[2:]
        if not rest:
            return self._resource_list(group, version)
        if len(rest) == 4 and rest[0] == "namespaces":
            return self._get(group, version, rest[1], rest[2], rest[3])
        if len(rest) == 3 and rest[0] == "namespaces":
            return self._list(group, version, rest[2], rest[1], query)
        if len(rest) == 1:
            return self._list(group, version, rest[0], None, query)
        return _Reply(404, _UNKNOWN_RESOURCE)

    def _served(self, group: str, version: str, plural: str) -> CustomResource | None:
        for resource in self._resources:
            if (resource.group, resource.version, resource.plural) == (group, version, plural):
                return resource
        return None

    def _versions_of(self, group: str) -> list[str]:
        versions = {r.version for r in self._resources if r.group == group}
        return sorted(versions, key=_version_rank, reverse=True)

    def _group(self, group: str) -> dict[str, Any] | None:
        versions = self._versions_of(group)
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _group_list(self) -> dict[str, Any]:
        names = sorted({r.group for r in self._resources})
        groups = []
        for name in names:
            group = self._group(name)
            assert group is not None
            groups.append({key: group[key] for key in ("name", "versions", "preferredVersion")})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, group: str, version: str) -> _Reply:
        served = [r for r in self._resources if (r.group, r.version) == (group, version)]
        if not served:
            return _Reply(404, _UNKNOWN_RESOURCE)
        resources = [entry for resource in served for entry in resource.discovery()]
        return _Reply(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}",
                "resources": resources,
            },
        )

    def _forbidden_reply(
        self, group: str, plural: str, verb: str, namespace: str | None, name: str | None
    ) -> _Reply:
        subject = f"{plural}.{group}" + (f' "{name}"' if name else "")
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        message = (
            f'{subject} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
            f'"{plural}" in API group "{group}" {scope}'
        )
        details: dict[str, Any] = {"group": group, "kind": plural}
        if name:
            details["name"] = name
        return _Reply(403, _status(403, "Forbidden", message, details))

    def _get(self, group: str, version: str, namespace: str, plural: str, name: str) -> _Reply:
        # RBAC decides before the request reaches any API, so it answers for unknown CRDs too.
        if (group, plural) in self._forbidden:
            return self._forbidden_reply(group, plural, "get", namespace, name)
        resource = self._served(group, version, plural)
        if resource is None or not resource.namespaced:
            return _Reply(404, _UNKNOWN_RESOURCE)
        stored = self._objects.get((group, resource.kind, namespace, name))
        if stored is None:
            message = f'{plural}.{group} "{name}" not found'
            details = {"name": name, "group": group, "kind": plural}
            return _Reply(404, _status(404, "NotFound", message, details))
        return _Reply(200, self._as_version(stored, resource))

    def _list(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        query: dict[str, list[str]],
    ) -> _Reply:
        if (group, plural) in self._forbidden:
            return self._forbidden_reply(group, plural, "list", namespace, None)
        resource = self._served(group, version, plural)
        if resource is None:
            return _Reply(404, _UNKNOWN_RESOURCE)
        items = [
            self._as_version(obj, resource)
            for (g, kind, ns, _), obj in sorted(self._objects.items())
            if g == group and kind == resource.kind and namespace in (None, ns)
        ]
        start = int(query.get("continue", ["0"])[0] or 0)
        limit = int(query.get("limit", ["0"])[0] or 0)
        end = start + limit if limit else len(items)
        metadata: dict[str, str | int] = {"resourceVersion": str(self._resource_version)}
        if end < len(items):
            metadata["continue"] = str(end)
            metadata["remainingItemCount"] = len(items) - end
        return _Reply(
            200,
            {
                "apiVersion": resource.group_version,
                "kind": f"{resource.kind}List",
                "metadata": metadata,
                "items": items[start:end],
            },
        )

    @staticmethod
    def _as_version(obj: dict[str, Any], resource: CustomResource) -> dict[str, Any]:
        # Flux's versions share one schema, so conversion only rewrites apiVersion.
        return {**copy.deepcopy(obj), "apiVersion": resource.group_version}


def _handler_for(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietRequestHandler):
        def _serve(self) -> None:
            reply = api.handle(self.command, self.path, self.headers.get("Authorization"))
            body = json.dumps(reply.body).encode() if reply.raw is None else reply.raw
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as a timing-out client does

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

    return Handler
