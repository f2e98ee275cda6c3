"""How the image is built: the Dockerfile read line by line, and the wheel it builds from what
the Dockerfile copies, installed into a fresh venv and run."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter import cli
from exporter.server import parse_listen_address
from exporter.simulator.distribution import free_port
from tests.processes import spawn, stop_cleanly, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
CONSOLE_SCRIPTS = PYPROJECT["project"]["scripts"]

NON_ROOT_ID = 65532
METRICS_PORT = parse_listen_address(cli.DEFAULT_LISTEN)[1]
CONFIG_FILE = "/etc/promotion-exporter/config.yml"


# --- the Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        word, _, rest = (pending + stripped).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def arguments(stage: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for instruction, rest in stage if instruction == word]


def key_values(stage: list[tuple[str, str]], word: str) -> dict[str, str]:
    pairs = [item for rest in arguments(stage, word) for item in shlex.split(rest)]
    return dict(pair.split("=", 1) for pair in pairs)


def copied_sources() -> list[str]:
    """The build-context paths the Dockerfile COPYs (COPY --from copies between stages)."""
    sources = []
    for rest in arguments([i for stage in stages() for i in stage], "COPY"):
        parts = rest.split()
        if not parts[0].startswith("--from="):
            sources += parts[:-1]
    return sources


def dockerignore_keeps(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    kept = True
    for raw_line in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        pattern = line.removeprefix("!").rstrip("/")
        loose = pattern.removeprefix("**/")
        if any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], loose)
            for p in prefixes
        ):
            kept = line.startswith("!")
    return kept


def test_dockerfile_builds_a_wheel_then_installs_it_into_a_venv() -> None:
    builder, final = stages()
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert final[0] == ("FROM", "python:3.11-slim")
    assert any("pip wheel --no-deps" in run for run in arguments(builder, "RUN"))
    install = " ".join(arguments(final, "RUN"))
    assert "from=builder" in install
    assert "python -m venv /opt/venv" in install
    assert "/opt/venv/bin/pip install" in install


def test_dockerfile_copies_files_that_exist_and_dockerignore_keeps() -> None:
    sources = copied_sources()
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        shipped = [f for f in files if "__pycache__" not in f.parts]
        assert shipped
        for file in shipped:
            assert dockerignore_keeps(file.relative_to(ROOT).as_posix()), file
    for left_out in (".venv/bin/python", "tests/test_deploy.py", ".git/HEAD", "deploy/base"):
        assert not dockerignore_keeps(left_out), left_out


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    final = stages()[-1]
    (user,) = arguments(final, "USER")
    uid, gid = (int(part) for part in user.split(":"))
    assert uid == gid == NON_ROOT_ID
    (entrypoint,) = arguments(final, "ENTRYPOINT")
    binary = Path(*json.loads(entrypoint))
    assert binary.parent == Path("/opt/venv/bin")
    assert binary.name in CONSOLE_SCRIPTS
    (command,) = arguments(final, "CMD")
    assert json.loads(command) == [f"--config.file={CONFIG_FILE}"]
    assert arguments(final, "EXPOSE") == [str(METRICS_PORT)]
    assert key_values(final, "ENV")["PYTHONDONTWRITEBYTECODE"] == "1"


def test_dockerfile_labels_name_the_project_and_its_version() -> None:
    final = stages()[-1]
    labels = key_values(final, "LABEL")
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert key_values(final, "ARG")["VERSION"] == VERSION


# --- the wheel, installed and run ----------------------------------------------------------


def run(command: list[str | Path], timeout: float) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"


@contextmanager
def refusing_ports(count: int) -> Iterator[list[int]]:
    """Ports bound but never listening: connecting is refused, and nothing else can take them."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        yield [sock.getsockname()[1] for sock in sockets]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def build_and_install(workdir: Path) -> Path:
    """The console script of a fresh venv holding the wheel built from what the image copies."""
    source = workdir / "src"
    source.mkdir()
    for name in copied_sources():
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = workdir / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, source], 180)
    (wheel,) = dist.glob("*.whl")
    venv = workdir / "venv"
    run([sys.executable, "-m", "venv", venv], 120)
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], 600)
    (script,) = CONSOLE_SCRIPTS
    return venv / "bin" / script


def unreachable_config(workdir: Path, registry: int, api: int, github: int) -> Path:
    kubeconfig = workdir / "integration.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "integration",
                        "cluster": {
                            "server": f"https://127.0.0.1:{api}",
                            # Inline, as in a real kubeconfig: the client copies it to TMPDIR.
                            "certificate-authority-data": "bm90IGEgcmVhbCBjZXJ0aWZpY2F0ZQ==",
                        },
                    }
                ],
                "users": [{"name": "reader", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "integration", "context": {"cluster": "integration", "user": "reader"}}
                ],
                "current-context": "integration",
            }
        )
    )
    config = workdir / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "interval": "30s",
                "timeout": "2s",
                "github": {"url": f"http://127.0.0.1:{github}", "repository": "owner/homelab"},
                "clusters": {"integration": {"kubeconfig": str(kubeconfig)}},
                "pipelines": [
                    {
                        "name": "platform",
                        "artifact": f"oci://127.0.0.1:{registry}/homelab/platform",
                        "plain_http": True,
                        "stages": {"integration": {"cluster": "integration"}},
                    }
                ],
            }
        )
    )
    return config


def files_under(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


def test_the_wheel_installs_into_a_fresh_venv_and_serves(tmp_path: Path) -> None:
    script = build_and_install(tmp_path)
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(temp)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # as the image sets it
    installed = files_under(script.parent.parent)
    # PEP 561: the wheel carries the marker, so a user's type checker reads the package's hints.
    assert any(path.match("site-packages/exporter/py.typed") for path in installed)
    log = tmp_path / "exporter.log"
    with refusing_ports(3) as (registry, api, github):
        config = unreachable_config(tmp_path, registry, api, github)
        port = free_port()
        command = [script, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
        process = spawn(command, log, env)
        try:
            wait_ready(process, f"http://127.0.0.1:{port}/readyz", log, "the exporter", 30)
            health = get(f"http://127.0.0.1:{port}/healthz")
            status, exposition = get(f"http://127.0.0.1:{port}/metrics")
            inline_certificate_copies = list(temp.iterdir())
        finally:
            stop_cleanly(process, log, "the exporter", timeout=15)
    assert health == (200, "ok\n")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    up = {
        (s.labels["kind"], s.labels["name"]): s.value
        for s in families["promotion_source_up"].samples
    }
    assert up == {
        ("registry", f"127.0.0.1:{registry}/homelab/platform"): 0,
        ("cluster", "integration"): 0,
        ("github", "owner/homelab"): 0,
    }
    errors = {
        (s.labels["kind"], s.labels["reason"]): s.value
        for s in families["promotion_source_errors"].samples
        if s.name == "promotion_source_errors_total"
    }
    assert errors["cluster", "unreachable"] >= 1
    assert "cluster integration: poll failed (unreachable)" in log.read_text()
    # Why the Deployment mounts an emptyDir at /tmp; and nothing else was written anywhere.
    assert inline_certificate_copies
    assert files_under(script.parent.parent) == installed
    assert not any(home.iterdir())
