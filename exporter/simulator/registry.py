"""A small in-memory OCI distribution server, for the simulator and for tests.

It speaks the parts of the distribution API that Flux and the exporter use: tag listing with
`n`/`last` paging and a `Link` header, manifests and blobs by tag or digest, monolithic blob
upload, and optionally GHCR's bearer-token flow. It records every request so callers can count
them, and can be told to fail with a given status.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, urlsplit

from exporter.registry import basic_authorization
from exporter.simulator.loopback import LoopbackServer, QuietRequestHandler

_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_ROUTE = re.compile(
    rf"^/v2/(?P<name>{_NAME})/(?:"
    r"(?P<tags>tags/list)"
    r"|manifests/(?P<reference>[^/]+)"
    r"|blobs/uploads/(?P<upload>[^/]*)"
    r"|blobs/(?P<blob>[^/]+)"
    r")$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ACTIONS_FOR_METHOD = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}
_ERROR_CODES = {
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NAME_UNKNOWN",
    405: "UNSUPPORTED",
    429: "TOOMANYREQUESTS",
    500: "UNKNOWN",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: str
    auth_scheme: str | None  # Basic | Bearer | None
    basic_user: str | None  # the username of basic credentials, never the password


@dataclass
class _Repository:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest: (type, body)
    tags: dict[str, str] = field(default_factory=dict)  # tag: digest


@dataclass(frozen=True)
class _Grant:
    repository: str
    actions: frozenset[str]


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(status: int, code: str | None = None, message: str = "", **headers: str) -> _Response:
    error = {"code": code or _ERROR_CODES.get(status, "UNKNOWN"), "message": message}
    body = json.dumps({"errors": [error]}).encode()
    return _Response(status, body, {"Content-Type": "application/json", **headers})


class RegistryServer(LoopbackServer[RecordedRequest]):
    """An OCI registry on 127.0.0.1 at an ephemeral port.

    token_auth: require GHCR-style bearer tokens from `<url>/token`. Anonymous callers get pull
    tokens when anonymous_pull is true; callers with basic credentials listed in `credentials`
    get pull, push and delete. realm_host advertises the realm under another hostname (the same
    server still answers it), to test what clients do with a realm on a foreign site; it may be
    changed while the server runs.
    """

    def __init__(
        self,
        *,
        page_size: int = 100,
        token_auth: bool = False,
        credentials: dict[str, str] | None = None,
        anonymous_pull: bool = True,
        allow_tag_delete: bool = False,
        service: str = "sim-registry",
        realm_host: str | None = None,
    ) -> None:
        super().__init__()
        self.page_size = page_size
        self.token_auth = token_auth
        self.anonymous_pull = anonymous_pull
        self.allow_tag_delete = allow_tag_delete
        self.service = service
        self.realm_host = realm_host
        self._basic_headers = {
            basic_authorization(user, password): user
            for user, password in (credentials or {}).items()
        }
        self._lock = threading.Lock()
        self._repositories: dict[str, _Repository] = {}
        self._uploads: dict[str, str] = {}  # upload id: repository
        self._tokens: dict[str, _Grant] = {}
        self._failure: _Response | None = None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    @property
    def host(self) -> str:
        """host:port, as it appears in an oci:// URL."""
        return f"127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"http://{self.realm_host or '127.0.0.1'}:{self.port}/token"

    # --- controls for tests ---------------------------------------------------------------

    def fail_with(self, status: int | None) -> None:
        """Answer every /v2/ request with this error status (429 adds Retry-After); None heals."""
        headers = {"Retry-After": "30"} if status == 429 else {}
        with self._lock:
            self._failure = (
                _error(status, message="injected failure", **headers) if status else None
            )

    def invalidate_tokens(self) -> None:
        """Forget every issued token, as a registry does when tokens expire."""
        with self._lock:
            self._tokens.clear()

    def tags(self, repository: str) -> list[str]:
        with self._lock:
            repo = self._repositories.get(repository)
            return sorted(repo.tags) if repo else []

    # --- request handling -----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Response:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        authorization = headers.get("authorization")
        with self._lock:
            self._record(self._request_entry(method, parts.path, parts.query, authorization))
            if parts.path == "/token" and method == "GET":
                return self._issue_token(query, authorization)
            if not parts.path.startswith("/v2/"):
                return _error(404, "NOT_FOUND", "not a registry path")
            if self._failure is not None:
                return self._failure
            if parts.path == "/v2/":
                return self._check_token(authorization, None, "pull") or _Response(200, b"{}")
            route = _ROUTE.match(parts.path)
            if route is None:
                return _error(404, "NAME_INVALID", "unknown path")
            action = _ACTIONS_FOR_METHOD.get(method, "push")
            denied = self._check_token(authorization, route["name"], action)
            if denied:
                return denied
            return self._route(method, route, query, headers, body)

    def _request_entry(
        self, method: str, path: str, query: str, authorization: str | None
    ) -> RecordedRequest:
        scheme = authorization.split(" ", 1)[0] if authorization else None
        return RecordedRequest(
            method, path, query, scheme, self._basic_headers.get(authorization or "")
        )

    def _route(
        self,
        method: str,
        route: re.Match[str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> _Response:
        name = route["name"]
        if route["tags"] and method == "GET":
            return self._list_tags(name, query)
        if route["reference"] is not None:
            return self._manifest(method, name, route["reference"], headers, body)
        if route["upload"] is not None:
            return self._upload(method, name, route["upload"], query, body)
        if route["blob"] is not None and method in ("GET", "HEAD"):
            return self._blob(method, name, route["blob"])
        return _error(405, message=f"{method} is not supported here")

    def _issue_token(self, query: dict[str, list[str]], authorization: str | None) -> _Response:
        if authorization is not None and authorization not in self._basic_headers:
            return _error(401, message="bad credentials")
        # Clients ask for one scope at a time, as the challenge names one.
        kind, _, rest = query.get("scope", ["repository::"])[0].partition(":")
        repository, _, wanted = rest.rpartition(":")
        if kind != "repository":
            return _error(400, "SCOPE_INVALID", "only repository scopes are supported")
        if authorization is not None:
            allowed = {"pull", "push", "delete"}
        else:
            allowed = {"pull"} if self.anonymous_pull else set()
        token = secrets.token_urlsafe(16)
        self._tokens[token] = _Grant(repository, frozenset(wanted.split(",")) & allowed)
        body = json.dumps({"token": token}).encode()
        return _Response(200, body, {"Content-Type": "application/json"})

    def _check_token(
        self, authorization: str | None, name: str | None, action: str
    ) -> _Response | None:
        if not self.token_auth:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        grant = self._tokens.get(token) if scheme == "Bearer" else None
        if grant is not None and (
            name is None or (grant.repository == name and action in grant.actions)
        ):
            return None
        challenge = f'Bearer realm="{self.realm}",service="{self.service}"'
        if name is not None:
            actions = "pull" if action == "pull" else f"pull,{action}"
            challenge += f',scope="repository:{name}:{actions}"'
        return _error(401, message="authentication required", **{"WWW-Authenticate": challenge})

    def _repository(self, name: str) -> _Repository:
        return self._repositories.setdefault(name, _Repository())

    def _list_tags(self, name: str, query: dict[str, list[str]]) -> _Response:
        repo = self._repositories.get(name)
        if repo is None or not repo.tags:
            return _error(404, message="repository name not known to registry")
        page_size = int(query.get("n", [self.page_size])[0])
        last = query.get("last", [""])[0]
        remaining = [tag for tag in sorted(repo.tags) if tag > last]
        page = remaining[:page_size]
        headers = {"Content-Type": "application/json"}
        if len(remaining) > page_size:
            link = f"/v2/{name}/tags/list?last={quote(page[-1])}&n={page_size}"
            headers["Link"] = f'<{link}>; rel="next"'
        body = json.dumps({"name": name, "tags": page}).encode()
        return _Response(200, body, headers)

    def _manifest(
        self, method: str, name: str, reference: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        if method == "PUT":
            return self._put_manifest(name, reference, headers.get("content-type", ""), body)
        repo = self._repositories.get(name)
        digest = (
            reference if _DIGEST.match(reference) else (repo.tags.get(reference) if repo else None)
        )
        if repo is None or digest not in repo.manifests:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        if method == "DELETE":
            return self._delete_manifest(repo, reference, digest)
        media_type, content = repo.manifests[digest]
        response_headers = {
            "Content-Type": media_type,
            "Docker-Content-Digest": digest,
            "Content-Length": str(len(content)),
        }
        if method == "HEAD":
            return _Response(200, b"", response_headers)
        if method == "GET":
            return _Response(200, content, response_headers)
        return _error(405, message=f"{method} is not supported on manifests")

    def _put_manifest(self, name: str, reference: str, media_type: str, body: bytes) -> _Response:
        digest = _digest_of(body)
        if _DIGEST.match(reference) and reference != digest:
            return _error(400, "DIGEST_INVALID", "manifest does not match its digest")
        try:
            manifest = json.loads(body)
            referenced = [manifest["config"], *manifest["layers"]]
            blob_digests = [descriptor["digest"] for descriptor in referenced]
        except (ValueError, KeyError, TypeError):
            return _error(400, "MANIFEST_INVALID", "not an image manifest")
        repo = self._repository(name)
        if any(blob not in repo.blobs for blob in blob_digests):
            return _error(400, "MANIFEST_BLOB_UNKNOWN", "manifest references an unknown blob")
        repo.manifests[digest] = (media_type, body)
        if not _DIGEST.match(reference):
            repo.tags[reference] = digest
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        return _Response(201, b"", headers)

    def _delete_manifest(self, repo: _Repository, reference: str, digest: str) -> _Response:
        if _DIGEST.match(reference):
            del repo.manifests[digest]
            for tag in [t for t, d in repo.tags.items() if d == digest]:
                del repo.tags[tag]
        elif self.allow_tag_delete:
            del repo.tags[reference]
        else:
            return _error(405, message="tag deletion is disabled")
        return _Response(202)

    def _upload(
        self, method: str, name: str, upload: str, query: dict[str, list[str]], body: bytes
    ) -> _Response:
        if method == "POST" and not upload:
            upload_id = secrets.token_hex(8)
            self._uploads[upload_id] = name
            location = f"/v2/{name}/blobs/uploads/{upload_id}"
            return _Response(202, b"", {"Location": location, "Docker-Upload-UUID": upload_id})
        if method == "PUT" and self._uploads.get(upload) == name:
            digest = query.get("digest", [""])[0]
            if digest != _digest_of(body):
                return _error(400, "DIGEST_INVALID", "blob does not match its digest")
            del self._uploads[upload]
            self._repository(name).blobs[digest] = body
            headers = {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
            return _Response(201, b"", headers)
        return _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")

    def _blob(self, method: str, name: str, digest: str) -> _Response:
        repo = self._repositories.get(name)
        content = repo.blobs.get(digest) if repo else None
        if content is None:
            return _error(404, "BLOB_UNKNOWN", "blob unknown")
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": digest,
            "Content-Length": str(len(content)),
        }
        return _Response(200, content if method == "GET" else b"", headers)


def _handler_for(registry: RegistryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sim-registry"
        timeout = 10  # lets an idle keep-alive connection's thread end
        # Headers and body leave in one segment: split writes meet delayed ACKs and cost 40 ms.
        wbufsize = -1
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            response = registry.handle(self.command, self.path, headers, body)
            self.send_response(response.status)
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            for key, value in response.headers.items():
                self.send_header(key, value)
            if "Content-Length" not in response.headers:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        # http.server dispatches on these names.
        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

    return Handler
