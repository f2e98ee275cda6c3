"""The real exporter process, polling the simulator's servers through one fault proxy each."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator.distribution import free_port
from exporter.simulator.lab import ARTIFACT_REPOSITORY, GITHUB_REPOSITORY, Lab
from exporter.simulator.scenarios import SCENARIOS_BY_NAME, play
from tests.faults.proxy import FaultProxy
from tests.processes import spawn, wait_ready

INTERVAL = 1.0  # seconds; `timeout` is 1s too, so a source poll's deadline is 3s
REGISTRY_TOKEN_ENV = "FAULT_REGISTRY_TOKEN"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Scrape:
    seconds: float
    samples: Samples

    def value(self, metric: str, /, **labels: str) -> float | None:
        return self.samples.get((metric, frozenset(labels.items())))

    def matching(self, metric: str, /, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        wanted = set(labels.items())
        return {k: v for (n, k), v in self.samples.items() if n == metric and wanted <= k}

    def failing_nodes(self) -> set[tuple[str, str]]:
        return {
            (dict(k)["tree"], dict(k)["node"])
            for k, v in self.matching("promotion_tree_node_status", status="failing").items()
            if v == 1
        }


class FaultWorld:
    """Lab servers, a proxy before each, and `promotion-exporter` as a child process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        now = time.time()
        self.lab = Lab(start=now - 3 * 86400, interval=f"{INTERVAL:g}s").start()
        play(self.lab.sim, SCENARIOS_BY_NAME["healthy"], now)
        self.kube_tokens = {}
        for name, api in self.lab.clusters.items():
            api.token = f"kube-{name}-{secrets.token_hex(16)}"
            self.kube_tokens[name] = api.token
        self.registry_token = f"reg-{secrets.token_hex(16)}"
        self.proxies = {
            "registry": FaultProxy(self.lab.registry.url).start(),
            "github": FaultProxy(self.lab.github.url).start(),
            **{n: FaultProxy(api.url).start() for n, api in self.lab.clusters.items()},
        }
        self._point_sources_at_the_proxy()
        self.port = free_port()
        self.log_path = root / "exporter.log"
        self.process = self._start()

    def _point_sources_at_the_proxy(self) -> None:
        """The OCIRepositories name the registry the exporter reads: the proxy's address."""
        upstream, proxied = self.lab.registry_host, self.proxies["registry"].host
        for name, api in self.lab.clusters.items():
            url = f"{api.url}/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/"
            response = httpx.get(
                url + "ocirepositories/flux-system",
                headers={"Authorization": f"Bearer {self.kube_tokens[name]}"},
            )
            source = response.json()
            source["spec"]["url"] = source["spec"]["url"].replace(upstream, proxied)
            api.put(source)

    @property
    def secrets(self) -> list[str]:
        return [self.lab.github_token, self.registry_token, *self.kube_tokens.values()]

    @property
    def source_names(self) -> dict[str, tuple[str, str]]:
        """(kind, name) of each proxied source, as the exporter labels it."""
        registry = f"{self.proxies['registry'].host}/{ARTIFACT_REPOSITORY}"
        return {
            "registry": ("registry", registry),
            "github": ("github", GITHUB_REPOSITORY),
            "integration": ("cluster", "integration"),
            "live": ("cluster", "live"),
        }

    def _config(self) -> Path:
        config: dict[str, Any] = self.lab.config_dict()
        config["timeout"] = "1s"
        config["grace_polls"] = 3
        config["github"]["url"] = self.proxies["github"].url
        for name, api in self.lab.clusters.items():
            kubeconfig = api.kubeconfig(name)
            kubeconfig["clusters"][0]["cluster"]["server"] = self.proxies[name].url
            path = self.root / f"{name}.kubeconfig"
            path.write_text(yaml.safe_dump(kubeconfig))
            config["clusters"][name] = {"kubeconfig": str(path)}
        pipeline = config["pipelines"][0]
        pipeline["artifact"] = f"oci://{self.proxies['registry'].host}/{ARTIFACT_REPOSITORY}"
        pipeline["registry_auth"] = {"token_env": REGISTRY_TOKEN_ENV}
        path = self.root / "promotion-exporter.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _start(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={self._config()}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        env = {**os.environ, REGISTRY_TOKEN_ENV: self.registry_token}
        process = spawn(command, self.log_path, env)
        wait_ready(process, f"{self.url}/readyz", self.log_path, "exporter", 30)
        return process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def scrape(self) -> Scrape:
        started = time.monotonic()
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        seconds = time.monotonic() - started
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return Scrape(seconds, samples)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pages(self) -> str:
        """Everything the exporter serves that a person or a program reads."""
        return "".join(
            httpx.get(f"{self.url}{path}", timeout=5).text
            for path in ("/metrics", "/", "/healthz", "/readyz")
        )

    def wait_for(self, check: Callable[[Scrape], bool], seconds: float) -> Scrape | None:
        """The first scrape that passes `check` within `seconds`, or None."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            scrape = self.scrape()
            if check(scrape):
                return scrape
            time.sleep(0.1)
        return None

    def clear(self) -> None:
        for proxy in self.proxies.values():
            proxy.clear()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for proxy in self.proxies.values():
            proxy.stop()
        self.lab.stop()
