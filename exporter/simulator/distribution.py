"""Debian's docker-registry (distribution 2.8) as a child process on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

DOCKER_REGISTRY = "docker-registry"
STARTUP_SECONDS = 10.0


def available() -> bool:
    return shutil.which(DOCKER_REGISTRY) is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    auth = f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}\n" if htpasswd else ""
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n" + auth
    )


class DistributionRegistry:
    """Starts docker-registry with its own config and storage; RuntimeError if it cannot."""

    def __init__(self, root: Path | None = None, htpasswd_line: str | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="docker-registry-"))
        self.htpasswd_line = htpasswd_line
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def start(self) -> DistributionRegistry:
        binary = shutil.which(DOCKER_REGISTRY)
        if binary is None:
            raise RuntimeError("docker-registry is not installed (Debian package docker-registry)")
        htpasswd = None
        if self.htpasswd_line:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text(self.htpasswd_line + "\n")
        config = self.root / "config.yml"
        config.write_text(_config(self.root, self.port, htpasswd))
        # A clean environment: REGISTRY_* variables would override the config file.
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        with self.log.open("wb") as log_file:
            self.process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        self._wait_until_serving()
        return self

    def _wait_until_serving(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {self.process.returncode}:\n"
                    f"{self.log.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return
            except httpx.TransportError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer {self.url}/v2/ in {STARTUP_SECONDS}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> DistributionRegistry:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
