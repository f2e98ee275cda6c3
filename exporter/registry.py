"""Reads a pipeline's OCI repository: its tags, the digest each points at, their annotations.

This is the only module that talks to OCI registries. Tags the pipeline uses are immutable by
its convention and manifests are content-addressed, so after the first poll a steady-state poll
costs only the tag-list page requests: a tag is resolved to a digest once, a digest's manifest is
fetched once.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from exporter import redact
from exporter.bounds import (
    LIST_LIMIT,
    MANIFEST_LIMIT,
    MAX_RETRY_AFTER,
    POLL_TIMEOUTS,
    Deadline,
    read_limited,
    retry_after_seconds,
)
from exporter.config import PipelineConfig
from exporter.snapshot import Artifact, ErrorReason, RegistryData, SourceError, parse_timestamp
from exporter.tags import classify

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
# GHCR accepts any non-empty username with a personal access token, so a pipeline that only
# configures a token authenticates under this name.
PLACEHOLDER_USERNAME = "promotion-exporter"
_ANNOTATION_CREATED = "org.opencontainers.image.created"
_ANNOTATION_REVISION = "org.opencontainers.image.revision"
_ANNOTATION_SOURCE = "org.opencontainers.image.source"
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]*))')
_MAX_TAG_PAGES = 1000


def same_site(registry_host: str, other_host: str) -> bool:
    """Whether credentials meant for registry_host may be sent to other_host.

    Same hostname, or the same registrable domain taken as the last two DNS labels (so
    registry-1.docker.io and auth.docker.io match). Names are compared, never resolved: an IP
    address matches only itself, so 127.0.0.1 and localhost are different sites. The two-label
    rule does not know public suffixes such as co.uk.
    """
    registry_host, other_host = registry_host.lower(), other_host.lower()
    if registry_host == other_host:
        return True
    if _is_ip_address(registry_host) or _is_ip_address(other_host):
        return False
    return _registrable_domain(registry_host) == _registrable_domain(other_host)


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _registrable_domain(host: str) -> str:
    return ".".join(host.rstrip(".").split(".")[-2:])


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # lower case: bearer | basic
    params: dict[str, str]


def _parse_challenge(response: httpx.Response) -> _Challenge | None:
    challenges = []
    for header in response.headers.get_list("www-authenticate"):
        scheme, _, rest = header.strip().partition(" ")
        params = {
            m.group(1).lower(): m.group(2) or m.group(3) for m in _CHALLENGE_PARAM.finditer(rest)
        }
        challenges.append(_Challenge(scheme.lower(), params))
    # A registry that offers both prefers tokens; so do we.
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


class ChallengeAuth(httpx.Auth):
    """Answers a registry's 401 challenge the way docker and Flux do, and caches the result.

    Bearer: fetch a token from the advertised realm (with basic credentials only when the realm
    is on the registry's own site and not a downgrade to plain http), cache it, and on a later 401
    fetch a new one once and retry. Basic: send the credentials. Credentials and tokens are only
    ever attached to requests for the registry's own origin.
    """

    requires_request_body = True
    # The bodies are read by the client, within its limits; only the token's is read here.
    requires_response_body = False

    def __init__(self, registry_url: str | httpx.URL, credentials: tuple[str, str] | None) -> None:
        self._registry = httpx.URL(str(registry_url))
        self._credentials = credentials
        self._authorization: str | None = None

    def use_credentials(self, credentials: tuple[str, str] | None) -> None:
        """Switch credentials (e.g. a rotated token file); a token got with the old ones goes."""
        if credentials is not None:
            redact.register_basic(*credentials)
        if credentials != self._credentials:
            self._credentials = credentials
            self._authorization = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self._is_registry_origin(request.url):
            yield request
            return
        if self._authorization:
            request.headers["Authorization"] = self._authorization
        response = yield request
        if response.status_code != 401:
            return
        challenge = _parse_challenge(response)
        if challenge is None:
            return
        if challenge.scheme == "basic":
            basic = basic_authorization(*self._credentials) if self._credentials else None
            if basic is None or request.headers.get("Authorization") == basic:
                return  # nothing to offer, or these very credentials were just refused
            self._authorization = basic
        elif challenge.scheme == "bearer":
            token_response = yield self._token_request(challenge)
            if token_response.status_code != 200:
                return
            token = _read_token(token_response)
            redact.register(token)
            self._authorization = f"Bearer {token}"
        else:
            return
        request.headers["Authorization"] = self._authorization
        yield request

    def _is_registry_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (
            self._registry.scheme,
            self._registry.host,
            self._registry.port,
        )

    def _token_request(self, challenge: _Challenge) -> httpx.Request:
        realm_text = challenge.params.get("realm", "")
        realm = httpx.URL(realm_text) if realm_text else None
        if realm is None or realm.scheme not in ("http", "https") or not realm.host:
            raise SourceError(
                ErrorReason.BAD_RESPONSE,
                f"registry {self._registry.host} sent a bearer challenge without a usable realm",
            )
        query: dict[str, str] = {
            key: challenge.params[key] for key in ("service", "scope") if key in challenge.params
        }
        request = httpx.Request("GET", realm.copy_merge_params(query))
        if self._credentials is not None and self._may_send_credentials(realm):
            request.headers["Authorization"] = basic_authorization(*self._credentials)
        return request

    def _may_send_credentials(self, realm: httpx.URL) -> bool:
        refusal = None
        if not same_site(self._registry.host, realm.host):
            refusal = f"{realm.host} is not the registry's site {self._registry.host}"
        elif realm.scheme == "http" and self._registry.scheme == "https":
            refusal = "the realm is plain http while the registry is https"
        if refusal:
            log.warning(
                "registry %s advertises token realm %s; requesting an anonymous token because %s",
                self._registry.host,
                f"{realm.scheme}://{realm.netloc.decode('ascii')}{realm.path}",
                refusal,
            )
            return False
        return True


def basic_authorization(username: str, password: str) -> str:
    """The value of an Authorization header for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _read_token(response: httpx.Response) -> str:
    # httpx reads every response of an auth flow itself, so this body has no size limit of
    # ours; the poll's deadline still bounds it.
    body = _json_body(response.read(), "token response")
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise SourceError(ErrorReason.BAD_RESPONSE, "token response has no token")
    return token


def _json_body(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SourceError(ErrorReason.BAD_RESPONSE, f"{what} is not JSON") from None


@dataclass(frozen=True)
class _Reply:
    """A response whose body was read within its size limit and deadline."""

    response: httpx.Response
    body: bytes

    @property
    def status_code(self) -> int:
        return self.response.status_code


@dataclass(frozen=True)
class _Annotations:
    created: float | None
    revision: str | None
    source: str | None


class RegistryClient:
    """Polls one pipeline's repository. Keep one instance per pipeline: it holds the caches."""

    def __init__(self, pipeline: PipelineConfig, timeout: float) -> None:
        self._pipeline = pipeline
        scheme = "http" if pipeline.plain_http else "https"
        self._base = httpx.URL(f"{scheme}://{pipeline.registry_host}")
        self._auth = ChallengeAuth(self._base, None)
        self._http = httpx.Client(
            auth=self._auth,
            timeout=timeout,
            follow_redirects=False,
            event_hooks={"request": [self._count_request]},
        )
        self._timeout = timeout
        self._deadline = Deadline.after(timeout, 0.0)
        self._requests_made = 0
        self._digest_by_tag: dict[str, str] = {}
        self._annotations_by_digest: dict[str, _Annotations] = {}
        # Tags whose manifest answered 404, for as long as the tag list stays the same.
        self._absent: set[str] = set()
        self._listed: int | None = None  # hash of the tag list the absences were seen in
        self._blocked_until = 0.0  # monotonic: a 429's Retry-After

    @property
    def requests_made(self) -> int:
        """Every HTTP request sent so far, token requests included."""
        return self._requests_made

    def _count_request(self, _request: httpx.Request) -> None:
        self._requests_made += 1

    def close(self) -> None:
        self._http.close()

    def poll(self, deadline: Deadline | None = None) -> RegistryData:
        """The repository's artifacts; without a deadline, the poll gets the timeout thrice."""
        self._deadline = deadline or Deadline.after(POLL_TIMEOUTS * self._timeout, 0.0)
        self._auth.use_credentials(self._credentials())
        tags = self._list_tags()
        recognised = [tag for tag in tags if classify(tag) is not None]
        self._forget_tags_not_in(recognised)
        listed = hash(tuple(tags))
        if listed != self._listed:
            self._absent, self._listed = set(), listed
        for tag in recognised:
            if tag not in self._digest_by_tag and tag not in self._absent:
                self._resolve(tag)
        tags_by_digest: dict[str, list[str]] = {}
        for tag, digest in self._digest_by_tag.items():
            tags_by_digest.setdefault(digest, []).append(tag)
        for digest in tags_by_digest:
            if digest not in self._annotations_by_digest:
                self._annotations_by_digest[digest] = self._fetch_annotations(digest)
        return RegistryData(
            repository=self._pipeline.registry_repository,
            artifacts=tuple(
                self._artifact(digest, digest_tags)
                for digest, digest_tags in sorted(tags_by_digest.items())
            ),
            tag_count=len(tags),
            ignored_tags=len(tags) - len(recognised),
        )

    def _credentials(self) -> tuple[str, str] | None:
        auth = self._pipeline.registry_auth
        if auth is None:
            return None
        try:
            token = auth.token.read()
            username = auth.username.read() if auth.username else None
        except OSError as error:
            raise SourceError(
                ErrorReason.UNAUTHORIZED, f"cannot read registry credentials: {error.strerror}"
            ) from None
        if not token:
            raise SourceError(
                ErrorReason.UNAUTHORIZED, f"registry token ({auth.token.describe()}) is empty"
            )
        return (username or PLACEHOLDER_USERNAME, token)

    def _artifact(self, digest: str, tags: list[str]) -> Artifact:
        annotations = self._annotations_by_digest[digest]
        return Artifact(
            digest=digest,
            tags=tuple(sorted(tags)),
            created=annotations.created,
            revision=annotations.revision,
            source=annotations.source,
        )

    def _forget_tags_not_in(self, tags: list[str]) -> None:
        listed = set(tags)
        for tag in set(self._digest_by_tag) - listed:
            del self._digest_by_tag[tag]
        referenced = set(self._digest_by_tag.values())
        for digest in set(self._annotations_by_digest) - referenced:
            del self._annotations_by_digest[digest]

    def _list_tags(self) -> list[str]:
        tags: list[str] = []
        for page in self._tag_pages():
            body = _json_body(page.body, "tag list")
            # distribution writes "tags": null for a repository whose tags were all deleted;
            # a body without the key is no tag list at all, and must not read as "no tags".
            if not isinstance(body, dict) or "tags" not in body:
                raise SourceError(ErrorReason.BAD_RESPONSE, "tag list has no tags field")
            page_tags = body["tags"] if body["tags"] is not None else []
            if not isinstance(page_tags, list) or not all(isinstance(t, str) for t in page_tags):
                raise SourceError(ErrorReason.BAD_RESPONSE, "tag list has no list of tags")
            tags.extend(page_tags)
        return list(dict.fromkeys(tags))

    def _tag_pages(self) -> Iterator[_Reply]:
        first_page = self._base.join(f"/v2/{self._pipeline.repository_path}/tags/list")
        url: httpx.URL | None = first_page
        visited: set[httpx.URL] = set()
        while url is not None:
            if url in visited or len(visited) >= _MAX_TAG_PAGES:
                raise SourceError(ErrorReason.BAD_RESPONSE, "tag list pagination does not end")
            visited.add(url)
            reply = self._send("GET", url, LIST_LIMIT)
            # GHCR answers 404 NAME_UNKNOWN for a package never pushed: no artifacts yet. The URL
            # check keeps a 404 from a token realm from passing for that.
            if reply.status_code == 404 and reply.response.url == first_page:
                return
            self._check(reply, "tag list")
            yield reply
            url = self._next_page(reply.response)

    def _next_page(self, response: httpx.Response) -> httpx.URL | None:
        link = response.links.get("next")
        if not link or not link.get("url"):
            return None
        url = response.url.join(link["url"])
        if (url.scheme, url.host, url.port) != (
            self._base.scheme,
            self._base.host,
            self._base.port,
        ):
            raise SourceError(
                ErrorReason.BAD_RESPONSE,
                f"tag list next page points off the registry to {url.host}",
            )
        return url

    def _resolve(self, tag: str) -> None:
        url = self._base.join(f"/v2/{self._pipeline.repository_path}/manifests/{tag}")
        reply = self._send("HEAD", url, MANIFEST_LIMIT, headers={"Accept": MANIFEST_ACCEPT})
        if reply.status_code == 404:
            # Deleted since it was listed, or listed but never resolvable (a broken mirror):
            # not asked again until the tag list changes.
            self._absent.add(tag)
            return
        self._check(reply, f"manifest of tag {tag}")
        digest = reply.response.headers.get("docker-content-digest", "")
        if not _DIGEST.match(digest):
            raise SourceError(
                ErrorReason.BAD_RESPONSE,
                f"manifest of tag {tag} has no valid Docker-Content-Digest",
            )
        self._digest_by_tag[tag] = digest

    def _fetch_annotations(self, digest: str) -> _Annotations:
        url = self._base.join(f"/v2/{self._pipeline.repository_path}/manifests/{digest}")
        reply = self._send("GET", url, MANIFEST_LIMIT, headers={"Accept": MANIFEST_ACCEPT})
        self._check(reply, f"manifest {digest}")
        algorithm, _, expected = digest.partition(":")
        if hashlib.new(algorithm, reply.body).hexdigest() != expected:
            raise SourceError(
                ErrorReason.BAD_RESPONSE, f"manifest {digest} does not match its digest"
            )
        manifest = _json_body(reply.body, f"manifest {digest}")
        annotations = manifest.get("annotations") if isinstance(manifest, dict) else None
        if not isinstance(annotations, dict):
            annotations = {}
        created = parse_timestamp(_string(annotations.get(_ANNOTATION_CREATED)))
        return _Annotations(
            # flux push --reproducible writes the Unix epoch: it says nothing about build time.
            created=created or None,
            revision=_string(annotations.get(_ANNOTATION_REVISION)),
            source=_string(annotations.get(_ANNOTATION_SOURCE)),
        )

    def _send(
        self, method: str, url: httpx.URL, limit: int, headers: dict[str, str] | None = None
    ) -> _Reply:
        """One request, connect to last byte within the time left on the poll's deadline."""
        where = f"{method} {self._base.host}{url.path}"
        if time.monotonic() < self._blocked_until:
            wait = self._blocked_until - time.monotonic()
            raise SourceError(ErrorReason.RATE_LIMITED, f"{where}: Retry-After: {wait:.0f}s left")
        seconds = self._deadline.for_request(where, self._timeout)
        request = self._http.build_request(
            method, url, headers=headers, extensions={"timeout": httpx.Timeout(seconds).as_dict()}
        )
        try:
            response = self._http.send(request, stream=True)
            try:
                body = read_limited(response.iter_bytes(), limit, time.monotonic() + seconds, where)
            finally:
                response.close()
        except httpx.TimeoutException:
            raise SourceError(ErrorReason.TIMEOUT, f"{where} timed out") from None
        except httpx.TransportError as error:
            raise SourceError(
                ErrorReason.UNREACHABLE, f"{where} failed: {type(error).__name__}"
            ) from None
        except httpx.HTTPError as error:  # e.g. an undecodable gzip body
            raise SourceError(
                ErrorReason.BAD_RESPONSE, f"{where} failed: {type(error).__name__}"
            ) from None
        return _Reply(response, body)

    def _check(self, reply: _Reply, what: str) -> None:
        status = reply.status_code
        if status == 200:
            return
        detail = f"{what}: HTTP {status}{_error_codes(reply.body)}"
        if status == 401:
            raise SourceError(ErrorReason.UNAUTHORIZED, f"{detail} after authenticating")
        if status == 403:
            raise SourceError(ErrorReason.FORBIDDEN, detail)
        if status == 429:
            wait = self._honour_retry_after(reply.response.headers.get("retry-after"))
            raise SourceError(ErrorReason.RATE_LIMITED, f"{detail}, retry after {wait:.0f}s")
        if status >= 500:
            raise SourceError(ErrorReason.SERVER_ERROR, detail)
        raise SourceError(ErrorReason.BAD_RESPONSE, detail)

    def _honour_retry_after(self, header: str | None) -> float:
        """Sends nothing until the server's Retry-After has passed, capped; 0 without one."""
        wait = retry_after_seconds(header, time.time())
        if wait is None:
            return 0.0
        if wait > MAX_RETRY_AFTER:
            log.warning(
                "registry %s asks to wait %.0f seconds; waiting the cap, %.0f seconds",
                self._base.host,
                wait,
                MAX_RETRY_AFTER,
            )
            wait = MAX_RETRY_AFTER
        self._blocked_until = time.monotonic() + wait
        return wait


def _error_codes(body: bytes) -> str:
    """The distribution error codes (e.g. DENIED); never the free text, which could echo input."""
    try:
        errors = json.loads(body).get("errors")
        codes = [e["code"] for e in errors if isinstance(e.get("code"), str)]
    except (ValueError, AttributeError, TypeError, KeyError):
        return ""
    return f" {','.join(codes)}" if codes else ""


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
