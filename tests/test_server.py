"""The HTTP server and the real CLI, against sources that all refuse connections."""

from __future__ import annotations

import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import main
from exporter.config import load_config
from exporter.poller import Poller
from exporter.server import ExporterServer, parse_listen_address
from exporter.simulator.distribution import free_port
from tests.processes import spawn, stop_cleanly, wait_ready

TOKEN_ENV = "PROMOTION_SERVER_TEST_TOKEN"
TOKEN = "ghp_ServerTestToken4f2a9c1e7b3d5a8f6e0c2b4d"
KUBE_TOKEN = "kube-Token-9d8c7b6a5f4e3d2c"
REPOSITORY_PATH = "owner/homelab/platform"
OPENMETRICS = "application/openmetrics-text"


def write_kubeconfig(path: Path, port: int) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Config
            clusters:
              - name: closed
                cluster: {{server: "http://127.0.0.1:{port}"}}
            users:
              - name: reader
                user: {{token: {KUBE_TOKEN}}}
            contexts:
              - name: closed
                context: {{cluster: closed, user: reader}}
            current-context: closed
            """
        )
    )
    return path


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every source on a free port, which nothing listens on: each connection is refused."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv("PROMOTION_SERVER_TEST_USER", "robot")
    integration = write_kubeconfig(tmp_path / "integration.yaml", free_port())
    live = write_kubeconfig(tmp_path / "live.yaml", free_port())
    path = tmp_path / "promotion-exporter.yml"
    path.write_text(
        textwrap.dedent(
            f"""\
            interval: 30s
            timeout: 2s
            github:
              url: http://127.0.0.1:{free_port()}
              repository: owner/homelab
              token_env: {TOKEN_ENV}
            clusters:
              integration: {{kubeconfig: {integration}}}
              live: {{kubeconfig: {live}}}
            pipelines:
              - name: platform
                artifact: oci://127.0.0.1:{free_port()}/{REPOSITORY_PATH}
                plain_http: true
                registry_auth:
                  username_env: PROMOTION_SERVER_TEST_USER
                  token_env: {TOKEN_ENV}
                stages:
                  integration: {{cluster: integration}}
                  live: {{cluster: live}}
            """
        )
    )
    return path


@pytest.fixture
def poller(config_file: Path) -> Iterator[Poller]:
    poller = Poller(load_config(config_file))
    yield poller
    poller.close()


@pytest.fixture
def client(poller: Poller) -> Iterator[httpx.Client]:
    server = ExporterServer(poller, "127.0.0.1:0")
    server.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as http:
        yield http
    server.stop()


def source_up(exposition: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["kind"], s.labels["name"]): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == "promotion_source_up"
    }


def expected_sources(poller: Poller) -> set[tuple[str, str]]:
    (pipeline,) = poller.config.pipelines
    return {
        ("registry", pipeline.registry_repository),
        ("cluster", "integration"),
        ("cluster", "live"),
        ("github", "owner/homelab"),
    }


# --- Endpoints -------------------------------------------------------------------------------


def test_readyz_waits_for_the_first_poll(client: httpx.Client, poller: Poller) -> None:
    assert client.get("/readyz").status_code == 503
    poller.poll_once()
    assert client.get("/readyz").status_code == 200


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


def test_unknown_path_is_404(client: httpx.Client) -> None:
    assert client.get("/metricz").status_code == 404
    assert client.get("/metrics/extra").status_code == 404


def test_landing_page_lists_pipelines_and_sources_without_secrets(
    client: httpx.Client, poller: Poller
) -> None:
    poller.poll_once()
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "platform" in response.text
    for kind, name in expected_sources(poller):
        row = response.text.split(f'<tr data-source="{kind}/{name}">', 1)[1].split("</tr>")[0]
        assert "✗ down" in row and "unreachable" in row, row
    assert TOKEN not in response.text
    assert KUBE_TOKEN not in response.text


def test_metrics_text_format_by_default(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "promotion_exporter_build_info" in response.text
    assert "# EOF" not in response.text


def test_metrics_openmetrics_when_asked(client: httpx.Client) -> None:
    response = client.get("/metrics", headers={"Accept": f"{OPENMETRICS}; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(OPENMETRICS)
    assert response.text.endswith("# EOF\n")


def test_all_sources_down_still_scrapes(client: httpx.Client, poller: Poller) -> None:
    started = time.monotonic()
    poller.poll_once()
    # Refused connections fail at once; nothing should wait for the 2s timeout.
    assert time.monotonic() - started < 2
    response = client.get("/metrics")
    assert response.status_code == 200
    assert source_up(response.text) == dict.fromkeys(expected_sources(poller), 0.0)
    assert dict(poller.errors) == {
        (kind, name, "unreachable"): 1 for kind, name in expected_sources(poller)
    }
    assert TOKEN not in response.text
    assert KUBE_TOKEN not in response.text


# --- Listen addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (":9883", ("", 9883)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9883", ("::1", 9883)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9883", "host:", "host:99999", "host:port", "", ":-1"])
def test_parse_listen_address_rejects(address: str) -> None:
    with pytest.raises(ValueError, match="is not"):
        parse_listen_address(address)


def test_cli_refuses_a_bad_listen_address(config_file: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--config.file", str(config_file), "--web.listen-address", "9883"]
    assert main(argv) != 0
    assert "9883" in capsys.readouterr().err


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_serves_on_an_ipv6_address(poller: Poller) -> None:
    server = ExporterServer(poller, "[::1]:0")
    server.start()
    try:
        response = httpx.get(f"http://[::1]:{server.port}/healthz", timeout=5)
        assert response.status_code == 200
    finally:
        server.stop()


# --- The real command ------------------------------------------------------------------------


def test_cli_serves_and_exits_cleanly_on_sigterm(config_file: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "exporter.log"
    process = spawn(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.file",
            str(config_file),
            "--web.listen-address",
            f"127.0.0.1:{port}",
        ],
        log,
    )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/readyz", log, "the exporter", 15)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert set(source_up(metrics.text).values()) == {0.0}
        assert len(source_up(metrics.text)) == 4
    finally:
        stop_cleanly(process, log, "the exporter", timeout=5)
    output = log.read_text()
    assert "poll failed" in output
    assert TOKEN not in output
    assert KUBE_TOKEN not in output
