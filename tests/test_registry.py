"""RegistryClient against Debian's docker-registry and against the built-in OCI server."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from exporter.config import PipelineConfig, RegistryAuth, SecretRef
from exporter.registry import PLACEHOLDER_USERNAME, RegistryClient, same_site
from exporter.simulator.distribution import free_port
from exporter.simulator.oci import push_flux_artifact, tag_artifact
from exporter.simulator.registry import RecordedRequest, RegistryServer
from exporter.snapshot import Artifact, ErrorReason, ObjectRef, RegistryData, SourceError
from tests.fixtures.registry import (
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    SIM_PASSWORD,
    SIM_USER,
    RunningRegistry,
)

SOURCE = "https://github.com/owner/homelab.git"
REPOSITORY = "owner/homelab/platform"


def pipeline_for(host: str, repository: str, auth: RegistryAuth | None = None) -> PipelineConfig:
    return PipelineConfig(
        name="platform",
        artifact=f"oci://{host}/{repository}",
        plain_http=True,
        registry_auth=auth,
        stages={},
        alert=ObjectRef("flux-system", "validation-success"),
        provider=ObjectRef("flux-system", "github-dispatch"),
    )


def file_auth(tmp_path: Path, username: str | None, token: str) -> RegistryAuth:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    username_ref = None
    if username is not None:
        (tmp_path / "username").write_text(username)
        username_ref = SecretRef(file=tmp_path / "username")
    return RegistryAuth(username=username_ref, token=SecretRef(file=token_file))


@pytest.fixture
def make_client() -> Iterator[Callable[..., RegistryClient]]:
    clients: list[RegistryClient] = []

    def make(
        host: str,
        repository: str = REPOSITORY,
        auth: RegistryAuth | None = None,
        timeout: float = 5.0,
    ) -> RegistryClient:
        client = RegistryClient(pipeline_for(host, repository, auth), timeout=timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class Release(NamedTuple):
    version: str
    short_sha: str
    revision: str
    created: str


RELEASE_A = Release("0.1.0-rc.1", "a" * 7, f"main@sha1:{'a' * 40}", "2026-03-01T10:00:00Z")
# Pushed with flux push --reproducible: the created annotation is the Unix epoch.
RELEASE_B = Release("0.1.1-rc.1", "b" * 7, f"main@sha1:{'b' * 40}", "1970-01-01T00:00:00Z")
RELEASE_C = Release("0.1.2-rc.1", "c" * 7, f"main@sha1:{'c' * 40}", "2026-03-02T10:00:00Z")
SHORT_A, SHORT_B, SHORT_C = (r.short_sha for r in (RELEASE_A, RELEASE_B, RELEASE_C))
REV_A, REV_B, REV_C = (r.revision for r in (RELEASE_A, RELEASE_B, RELEASE_C))


def build(url: str, repository: str, release: Release, auth: tuple[str, str] | None = None) -> str:
    """What build-platform-artifact.yaml does: push X.Y.Z-rc.N, tag sha- and integration-."""
    digest = push_flux_artifact(
        url,
        repository,
        release.version,
        revision=release.revision,
        source=SOURCE,
        created=release.created,
        content={"platform.yaml": release.revision.encode()},
        auth=auth,
    )
    for tag in (f"sha-{release.short_sha}", f"integration-{release.short_sha}"):
        assert tag_artifact(url, repository, release.version, tag, auth=auth) == digest
    return digest


def promote(url: str, repository: str, short: str, stable: str) -> None:
    """What tag-validated-artifact.yaml does: validated-<sha> and the stable X.Y.Z."""
    for tag in (f"validated-{short}", stable):
        tag_artifact(url, repository, f"integration-{short}", tag)


def by_digest(data: RegistryData) -> dict[str, Artifact]:
    return {artifact.digest: artifact for artifact in data.artifacts}


def manifest_requests(server: RegistryServer) -> list[RecordedRequest]:
    return [r for r in server.requests if "/manifests/" in r.path]


# --- against docker-registry (distribution 2.8) -----------------------------------------------


def test_poll_groups_flux_artifacts_by_digest(
    docker_registry: RunningRegistry, repository_name: str, make_client
) -> None:
    url = docker_registry.url
    first = build(url, repository_name, RELEASE_A)
    promote(url, repository_name, SHORT_A, "0.1.0")
    reproducible = build(url, repository_name, RELEASE_B)
    newest = build(url, repository_name, RELEASE_C)
    tag_artifact(url, repository_name, newest, "latest")

    data = make_client(docker_registry.host, repository_name).poll()

    assert data.repository == f"{docker_registry.host}/{repository_name}"
    assert data.tag_count == 12
    assert data.ignored_tags == 1
    assert [a.digest for a in data.artifacts] == sorted([first, reproducible, newest])
    artifacts = by_digest(data)
    assert artifacts[first] == Artifact(
        digest=first,
        tags=(
            "0.1.0",
            "0.1.0-rc.1",
            f"integration-{SHORT_A}",
            f"sha-{SHORT_A}",
            f"validated-{SHORT_A}",
        ),
        created=1772359200.0,
        revision=REV_A,
        source=SOURCE,
    )
    assert artifacts[reproducible].created is None
    assert artifacts[reproducible].revision == REV_B
    assert artifacts[newest].tags == ("0.1.2-rc.1", f"integration-{SHORT_C}", f"sha-{SHORT_C}")
    assert artifacts[newest].created == 1772445600.0


def test_steady_state_poll_only_lists_tags(
    docker_registry: RunningRegistry, repository_name: str, make_client
) -> None:
    build(docker_registry.url, repository_name, RELEASE_A)
    client = make_client(docker_registry.host, repository_name)
    first = client.poll()
    after_first = client.requests_made
    assert after_first == 1 + 3 + 1  # tag list, a HEAD per tag, one manifest GET

    assert client.poll() == first
    assert client.requests_made - after_first == 1  # distribution 2.8 lists in one page


def test_new_tag_on_known_digest_costs_one_head(
    docker_registry: RunningRegistry, repository_name: str, make_client
) -> None:
    digest = build(docker_registry.url, repository_name, RELEASE_A)
    client = make_client(docker_registry.host, repository_name)
    client.poll()
    before = client.requests_made

    promote(docker_registry.url, repository_name, SHORT_A, "0.1.0")
    data = client.poll()

    assert client.requests_made - before == 1 + 2  # tag list and one HEAD per new tag
    assert by_digest(data)[digest].tags == (
        "0.1.0",
        "0.1.0-rc.1",
        f"integration-{SHORT_A}",
        f"sha-{SHORT_A}",
        f"validated-{SHORT_A}",
    )
    assert by_digest(data)[digest].revision == REV_A


def test_unknown_repository_on_docker_registry_is_empty(
    docker_registry: RunningRegistry, repository_name: str, make_client
) -> None:
    data = make_client(docker_registry.host, repository_name).poll()

    assert data == RegistryData(f"{docker_registry.host}/{repository_name}", (), 0, 0)


def test_basic_auth(
    docker_registry_basic_auth: RunningRegistry, repository_name: str, make_client, tmp_path: Path
) -> None:
    registry = docker_registry_basic_auth
    digest = build(registry.url, repository_name, RELEASE_A, auth=registry.credentials)
    client = make_client(
        registry.host, repository_name, file_auth(tmp_path, REGISTRY_USER, REGISTRY_PASSWORD)
    )

    assert [a.digest for a in client.poll().artifacts] == [digest]
    before = client.requests_made
    client.poll()
    assert client.requests_made - before == 1  # basic credentials are sent up front


def test_basic_auth_wrong_password_is_unauthorized(
    docker_registry_basic_auth: RunningRegistry, make_client, tmp_path: Path
) -> None:
    wrong_password = "wrong-password-1234"
    client = make_client(
        docker_registry_basic_auth.host,
        REPOSITORY,
        file_auth(tmp_path, REGISTRY_USER, wrong_password),
    )

    with pytest.raises(SourceError) as caught:
        client.poll()

    assert caught.value.reason is ErrorReason.UNAUTHORIZED
    assert wrong_password not in str(caught.value)
    assert wrong_password not in repr(caught.value)
    assert client.requests_made == 2  # anonymous, then the credentials once: no retry loop


def test_empty_token_file_is_unauthorized(
    docker_registry_basic_auth: RunningRegistry, make_client, tmp_path: Path
) -> None:
    client = make_client(docker_registry_basic_auth.host, auth=file_auth(tmp_path, None, ""))

    with pytest.raises(SourceError, match="token") as caught:
        client.poll()

    assert caught.value.reason is ErrorReason.UNAUTHORIZED
    assert client.requests_made == 0


def test_anonymous_poll_of_protected_registry_is_unauthorized(
    docker_registry_basic_auth: RunningRegistry, make_client
) -> None:
    with pytest.raises(SourceError) as caught:
        make_client(docker_registry_basic_auth.host).poll()

    assert caught.value.reason is ErrorReason.UNAUTHORIZED


def test_registry_down_is_unreachable(make_client) -> None:
    with pytest.raises(SourceError) as caught:
        make_client(f"127.0.0.1:{free_port()}").poll()

    assert caught.value.reason is ErrorReason.UNREACHABLE


def test_silent_registry_is_a_timeout(make_client) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections into the backlog but never answers
        client = make_client(f"127.0.0.1:{listener.getsockname()[1]}", timeout=0.2)

        with pytest.raises(SourceError) as caught:
            client.poll()

    assert caught.value.reason is ErrorReason.TIMEOUT


# --- against the built-in server ---------------------------------------------------------------


def test_link_pagination_over_three_pages(sim_registry: RegistryServer, make_client) -> None:
    url = sim_registry.url
    digest = build(url, REPOSITORY, RELEASE_A)
    for n in range(247):
        tag_artifact(url, REPOSITORY, digest, f"nightly-{n:03d}")
    assert len(sim_registry.tags(REPOSITORY)) == 250
    client = make_client(sim_registry.host)
    sim_registry.clear_requests()

    data = client.poll()

    tag_pages = [r for r in sim_registry.requests if r.path.endswith("/tags/list")]
    # Sorted: 0.1.0-rc.1, integration-, nightly-000 .. nightly-246, sha-: pages end at 097, 197.
    assert [r.query for r in tag_pages] == ["", "last=nightly-097&n=100", "last=nightly-197&n=100"]
    assert (data.tag_count, data.ignored_tags) == (250, 247)
    assert by_digest(data)[digest].tags == (
        "0.1.0-rc.1",
        f"integration-{SHORT_A}",
        f"sha-{SHORT_A}",
    )

    sim_registry.clear_requests()
    before = client.requests_made
    assert client.poll() == data
    assert client.requests_made - before == 3
    assert [(r.method, r.path) for r in sim_registry.requests] == [
        ("GET", f"/v2/{REPOSITORY}/tags/list")
    ] * 3


def test_unrecognised_tags_are_counted_never_resolved(
    sim_registry: RegistryServer, make_client
) -> None:
    digest = push_flux_artifact(
        sim_registry.url,
        REPOSITORY,
        "0.2.0",
        revision=REV_A,
        source=SOURCE,
        created="2026-03-01T10:00:00Z",
    )
    for tag in ("latest", "main", "build-42", "sha-XYZ", "1.2.3.4"):
        tag_artifact(sim_registry.url, REPOSITORY, digest, tag)
    sim_registry.clear_requests()

    data = make_client(sim_registry.host).poll()

    assert (data.tag_count, data.ignored_tags) == (6, 5)
    assert data.artifacts[0].tags == ("0.2.0",)
    assert [(r.method, r.path.rsplit("/", 1)[1]) for r in manifest_requests(sim_registry)] == [
        ("HEAD", "0.2.0"),
        ("GET", digest),
    ]


def test_new_tag_on_known_digest_is_one_head_and_no_get(
    sim_registry: RegistryServer, make_client
) -> None:
    build(sim_registry.url, REPOSITORY, RELEASE_A)
    client = make_client(sim_registry.host)
    client.poll()
    tag_artifact(sim_registry.url, REPOSITORY, f"integration-{SHORT_A}", f"validated-{SHORT_A}")
    sim_registry.clear_requests()

    client.poll()

    assert [(r.method, r.path) for r in sim_registry.requests] == [
        ("GET", f"/v2/{REPOSITORY}/tags/list"),
        ("HEAD", f"/v2/{REPOSITORY}/manifests/validated-{SHORT_A}"),
    ]


def test_deleted_tags_are_forgotten(sim_registry: RegistryServer, make_client) -> None:
    old = build(sim_registry.url, REPOSITORY, RELEASE_A)
    new = build(sim_registry.url, REPOSITORY, RELEASE_B)
    client = make_client(sim_registry.host)
    assert len(client.poll().artifacts) == 2

    for tag in ("0.1.0-rc.1", f"sha-{SHORT_A}", f"integration-{SHORT_A}", f"sha-{SHORT_B}"):
        response = httpx.delete(f"{sim_registry.url}/v2/{REPOSITORY}/manifests/{tag}")
        assert response.status_code == 202
    data = client.poll()

    assert old not in by_digest(data)
    assert by_digest(data)[new].tags == ("0.1.1-rc.1", f"integration-{SHORT_B}")
    assert data.tag_count == 2


def test_unknown_repository_is_empty(sim_registry: RegistryServer, make_client) -> None:
    data = make_client(sim_registry.host, "owner/never/pushed").poll()

    assert data == RegistryData(f"{sim_registry.host}/owner/never/pushed", (), 0, 0)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, ErrorReason.SERVER_ERROR),
        (503, ErrorReason.SERVER_ERROR),
        (403, ErrorReason.FORBIDDEN),
        (429, ErrorReason.RATE_LIMITED),
        (400, ErrorReason.BAD_RESPONSE),
    ],
)
def test_error_statuses_map_to_reasons(
    sim_registry: RegistryServer, make_client, status: int, reason: ErrorReason
) -> None:
    build(sim_registry.url, REPOSITORY, RELEASE_A)
    sim_registry.fail_with(status)

    with pytest.raises(SourceError) as caught:
        make_client(sim_registry.host).poll()

    assert caught.value.reason is reason
    assert f"HTTP {status}" in str(caught.value)


def test_rate_limit_message_says_when_to_retry(sim_registry: RegistryServer, make_client) -> None:
    sim_registry.fail_with(429)

    with pytest.raises(SourceError, match="retry after 30s"):
        make_client(sim_registry.host).poll()


def test_poll_after_an_outage_reuses_the_cache(sim_registry: RegistryServer, make_client) -> None:
    build(sim_registry.url, REPOSITORY, RELEASE_A)
    client = make_client(sim_registry.host)
    healthy = client.poll()
    sim_registry.fail_with(500)
    with pytest.raises(SourceError):
        client.poll()
    sim_registry.fail_with(None)
    sim_registry.clear_requests()

    assert client.poll() == healthy
    assert len(sim_registry.requests) == 1


# --- the bearer-token flow ----------------------------------------------------------------------


def test_anonymous_bearer_token_is_fetched_once_and_cached(
    sim_registry_with_token: RegistryServer, make_client
) -> None:
    server = sim_registry_with_token
    digest = build(server.url, REPOSITORY, RELEASE_A, auth=(SIM_USER, SIM_PASSWORD))
    client = make_client(server.host)
    server.clear_requests()

    assert [a.digest for a in client.poll().artifacts] == [digest]
    first_three = [(r.method, r.path, r.auth_scheme) for r in server.requests[:3]]
    assert first_three == [
        ("GET", f"/v2/{REPOSITORY}/tags/list", None),
        ("GET", "/token", None),
        ("GET", f"/v2/{REPOSITORY}/tags/list", "Bearer"),
    ]
    assert "scope=repository%3Aowner%2Fhomelab%2Fplatform%3Apull" in server.requests[1].query
    assert all(r.auth_scheme == "Bearer" for r in server.requests[2:])

    server.clear_requests()
    client.poll()
    assert [(r.path, r.auth_scheme) for r in server.requests] == [
        (f"/v2/{REPOSITORY}/tags/list", "Bearer")
    ]


def test_bearer_token_with_credentials(make_client, tmp_path: Path) -> None:
    with RegistryServer(
        token_auth=True, credentials={SIM_USER: SIM_PASSWORD}, anonymous_pull=False
    ) as server:
        digest = build(server.url, REPOSITORY, RELEASE_A, auth=(SIM_USER, SIM_PASSWORD))
        server.clear_requests()
        client = make_client(server.host, auth=file_auth(tmp_path, SIM_USER, SIM_PASSWORD))

        assert [a.digest for a in client.poll().artifacts] == [digest]
        token_requests = [r for r in server.requests if r.path == "/token"]
        assert [(r.auth_scheme, r.basic_user) for r in token_requests] == [("Basic", SIM_USER)]


def test_token_only_credentials_use_the_placeholder_username(make_client, tmp_path: Path) -> None:
    with RegistryServer(
        token_auth=True, credentials={PLACEHOLDER_USERNAME: SIM_PASSWORD}, anonymous_pull=False
    ) as server:
        build(server.url, REPOSITORY, RELEASE_A, auth=(PLACEHOLDER_USERNAME, SIM_PASSWORD))
        client = make_client(server.host, auth=file_auth(tmp_path, None, SIM_PASSWORD))

        assert len(client.poll().artifacts) == 1


def test_bearer_token_with_wrong_credentials_is_unauthorized(
    sim_registry_with_token: RegistryServer, make_client, tmp_path: Path
) -> None:
    wrong_token = "ghp_wrongTokenThatMustNotLeak"
    client = make_client(
        sim_registry_with_token.host, auth=file_auth(tmp_path, SIM_USER, wrong_token)
    )

    with pytest.raises(SourceError) as caught:
        client.poll()

    assert caught.value.reason is ErrorReason.UNAUTHORIZED
    assert wrong_token not in str(caught.value)


def test_invalidated_token_is_refreshed_once(
    sim_registry_with_token: RegistryServer, make_client
) -> None:
    server = sim_registry_with_token
    build(server.url, REPOSITORY, RELEASE_A, auth=(SIM_USER, SIM_PASSWORD))
    client = make_client(server.host)
    first = client.poll()
    server.invalidate_tokens()
    server.clear_requests()

    assert client.poll() == first
    assert [(r.path, r.auth_scheme) for r in server.requests] == [
        (f"/v2/{REPOSITORY}/tags/list", "Bearer"),
        ("/token", None),
        (f"/v2/{REPOSITORY}/tags/list", "Bearer"),
    ]


def test_useless_token_is_refreshed_only_once(make_client) -> None:
    with RegistryServer(
        token_auth=True, credentials={SIM_USER: SIM_PASSWORD}, anonymous_pull=False
    ) as server:
        build(server.url, REPOSITORY, RELEASE_A, auth=(SIM_USER, SIM_PASSWORD))
        server.clear_requests()

        with pytest.raises(SourceError) as caught:
            make_client(server.host).poll()

        assert caught.value.reason is ErrorReason.UNAUTHORIZED
        assert [r.path for r in server.requests].count("/token") == 1


def test_realm_on_a_foreign_host_gets_no_credentials(
    make_client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The registry is addressed as 127.0.0.1 but names its realm "localhost": the same machine,
    # yet a different site by name, so the client must ask for an anonymous token.
    with RegistryServer(token_auth=True, credentials={SIM_USER: SIM_PASSWORD}) as server:
        build(server.url, REPOSITORY, RELEASE_A, auth=(SIM_USER, SIM_PASSWORD))
        server.realm_host = "localhost"
        server.clear_requests()
        client = make_client(server.host, auth=file_auth(tmp_path, SIM_USER, SIM_PASSWORD))

        with caplog.at_level(logging.WARNING, logger="exporter.registry"):
            assert len(client.poll().artifacts) == 1

        token_requests = [r for r in server.requests if r.path == "/token"]
        assert [r.auth_scheme for r in token_requests] == [None]
        warning = caplog.text
        assert f"http://localhost:{server.port}/token" in warning
        assert "anonymous token" in warning
        assert SIM_PASSWORD not in warning


@pytest.mark.parametrize(
    ("registry", "realm", "expected"),
    [
        ("ghcr.io", "ghcr.io", True),
        ("registry-1.docker.io", "auth.docker.io", True),
        ("REGISTRY.example.com", "auth.example.com", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "localhost", False),
        ("127.0.0.1", "127.0.0.2", False),
        ("ghcr.io", "evil.io", False),
        ("ghcr.io", "ghcr.io.evil.net", False),
        ("example.com", "notexample.com", False),
        ("::1", "localhost", False),
    ],
)
def test_same_site(registry: str, realm: str, expected: bool) -> None:
    assert same_site(registry, realm) is expected


# --- malformed answers ---------------------------------------------------------------------------


Script = dict[tuple[str, str], tuple[int, dict[str, str], bytes]]


@pytest.fixture
def scripted_registry() -> Iterator[Callable[[Script], str]]:
    """A server answering (method, path-with-query) from a script; returns host:port."""
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> str:
        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                status, headers, body = script.get((self.command, self.path), (404, {}, b""))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        serve = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        serve.start()
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


TAGS_PATH = f"/v2/{REPOSITORY}/tags/list"
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "script",
    [
        {("GET", TAGS_PATH): (200, JSON, b"<html>not json</html>")},
        {("GET", TAGS_PATH): (200, JSON, b'{"name": "x", "tags": "0.1.0"}')},
        {
            ("GET", TAGS_PATH): (200, JSON, b'{"tags": ["0.1.0"]}'),
            ("HEAD", f"/v2/{REPOSITORY}/manifests/0.1.0"): (200, {}, b""),
        },
        {
            ("GET", TAGS_PATH): (200, JSON, b'{"tags": ["0.1.0"]}'),
            ("HEAD", f"/v2/{REPOSITORY}/manifests/0.1.0"): (
                200,
                {"Docker-Content-Digest": "sha256:" + "0" * 64},
                b"",
            ),
            ("GET", f"/v2/{REPOSITORY}/manifests/sha256:" + "0" * 64): (200, JSON, b"{}"),
        },
        {
            ("GET", TAGS_PATH): (
                200,
                {"Link": '<http://other.example/v2/x>; rel="next"', **JSON},
                b'{"tags": []}',
            )
        },
        {
            ("GET", TAGS_PATH): (
                200,
                {"Link": f'<{TAGS_PATH}>; rel="next"', **JSON},
                b'{"tags": []}',
            )
        },
        {("GET", TAGS_PATH): (401, {"WWW-Authenticate": 'Bearer service="x"'}, b"")},
    ],
    ids=[
        "not-json",
        "tags-not-a-list",
        "no-digest-header",
        "digest-mismatch",
        "link-off-registry",
        "link-loops",
        "realm-missing",
    ],
)
def test_malformed_answers_are_bad_responses(
    scripted_registry, make_client, script: Script
) -> None:
    with pytest.raises(SourceError) as caught:
        make_client(scripted_registry(script)).poll()

    assert caught.value.reason is ErrorReason.BAD_RESPONSE
