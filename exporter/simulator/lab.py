"""A whole simulated world on 127.0.0.1: a registry, two clusters, GitHub, and the pipeline.

The exporter needs no special mode to read it: `write_config` writes an ordinary config file
with kubeconfigs and a token file, exactly as a user would for GHCR and real clusters.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from exporter.config import Config, parse_config
from exporter.simulator import distribution
from exporter.simulator.githubapi import FakeGitHub
from exporter.simulator.kubeapi import FakeKubeAPI
from exporter.simulator.pipeline import Names, PipelineSimulator
from exporter.simulator.registry import RegistryServer

GITHUB_REPOSITORY = "owner/homelab"
ARTIFACT_REPOSITORY = "owner/homelab/platform"
# A second pipeline in the same repository and clusters: its own path, build workflow and
# Flux objects, and the seed's tag workflow shared with the first, titling its runs.
NEIGHBOUR_REPOSITORY = "owner/homelab/apps"
NEIGHBOUR_NAMES = Names(
    kustomization="apps",
    source="apps",
    alert="validation-success-apps",
    build_workflow="build-apps-artifact.yaml",
    watch_path="apps/",
    furniture=False,
    titles_runs=True,
)


class Lab:
    """Starts every fake server; `stop()` (or the context manager) takes them all down."""

    def __init__(
        self,
        *,
        pipeline: str = "platform",
        start: float | None = None,
        use_distribution: bool = False,
        flow: str = "rc",
        interval: str = "30s",
        provider_type: str = "githubdispatch",
        neighbour: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.has_neighbour = neighbour
        self.interval = interval
        self.root = Path(tempfile.mkdtemp(prefix=f"promotion-lab-{pipeline}-"))
        self.registry: RegistryServer | distribution.DistributionRegistry = (
            distribution.DistributionRegistry(self.root / "registry")
            if use_distribution
            else RegistryServer()
        )
        if use_distribution:
            (self.root / "registry").mkdir()
        self.clusters = {"integration": FakeKubeAPI(), "live": FakeKubeAPI()}
        self.github_token = f"ghp_{secrets.token_hex(18)}"
        self.github = FakeGitHub(GITHUB_REPOSITORY, token=self.github_token, clock=self.clock)
        self.flow = flow
        self.provider_type = provider_type
        self._start = time.time() if start is None else start
        self.sim: PipelineSimulator | None = None
        self.neighbour: PipelineSimulator | None = None
        self.registry_host = ""

    def clock(self) -> float:
        return self.sim.now if self.sim is not None else self._start

    def start(self) -> Lab:
        self.registry.start()
        for api in self.clusters.values():
            api.start()
        self.registry_host = self.registry.url.split("://", 1)[1]
        self.github.start()
        self.sim = self._simulator(ARTIFACT_REPOSITORY, Names(titles_runs=self.has_neighbour))
        if self.has_neighbour:
            self.neighbour = self._simulator(NEIGHBOUR_REPOSITORY, NEIGHBOUR_NAMES)
        return self

    def _simulator(self, repository: str, names: Names) -> PipelineSimulator:
        # The stable-only flow has no tag workflow at all: GitHub answers 404 for it.
        workflows = (names.build_workflow, names.promote_workflow)
        for workflow in workflows[: 2 if self.flow == "rc" else 1]:
            self.github.add_workflow(workflow)
        return PipelineSimulator(
            registry_url=self.registry.url,
            repository=repository,
            integration=self.clusters["integration"],
            live=self.clusters["live"],
            github=self.github,
            start=self._start,
            flow=self.flow,
            provider_type=self.provider_type,
            names=names,
        )

    def stop(self) -> None:
        self.github.stop()
        for api in self.clusters.values():
            api.stop()
        self.registry.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def take_down(self, source: str) -> None:
        """Make one source fail: 'registry', a cluster name, or 'github' (answers 500)."""
        if source == "registry":
            self.registry.stop()
        elif source == "github":
            self.github.fail_with(500, "simulated outage")
        else:
            self.clusters[source].stop()

    def config_dict(self) -> dict[str, Any]:
        kubeconfigs = {}
        for name, api in self.clusters.items():
            path = self.root / f"{name}.kubeconfig"
            api.write_kubeconfig(path, context_name=name)
            kubeconfigs[name] = {"kubeconfig": str(path)}
        token_file = self.root / "github-token"
        token_file.write_text(self.github_token)
        token_file.chmod(0o600)
        config: dict[str, Any] = {
            "interval": self.interval,
            "timeout": "5s",
            "github": {
                "url": self.github.url,
                "repository": GITHUB_REPOSITORY,
                "token_file": str(token_file),
            },
            "clusters": kubeconfigs,
            "pipelines": [self._pipeline_dict(self.pipeline, self.sim)],
        }
        if self.neighbour is not None:
            config["pipelines"].append(self._pipeline_dict(self.neighbour_pipeline, self.neighbour))
        if self.flow != "rc":
            config["github"]["promote_workflow"] = None
            for pipeline in config["pipelines"]:
                pipeline.update(alert=None, provider=None)
        return config

    def _pipeline_dict(self, name: str, sim: PipelineSimulator | None) -> dict[str, Any]:
        """The pipeline as a user would configure it for what the simulator plays."""
        assert sim is not None, "start() the lab first"
        names = sim.names
        pipeline: dict[str, Any] = {
            "name": name,
            "artifact": f"oci://{self.registry_host}/{sim.repository}",
            "plain_http": True,
            "stages": {
                "integration": {
                    "cluster": "integration",
                    "semver": ">= 0.0.0-0" if self.flow == "rc" else ">= 0.0.0",
                },
                "live": {"cluster": "live", "semver": ">= 0.0.0"},
            },
            "source": {"name": names.source},
            "kustomization": {"name": names.kustomization},
            "alert": {"namespace": names.alert_namespace, "name": names.alert},
            "provider": {"namespace": names.alert_namespace},
        }
        if names.watch_path != Names().watch_path:
            pipeline["github"] = {
                "watch_path": names.watch_path,
                "build_workflow": names.build_workflow,
            }
        if not names.furniture:
            pipeline["canaries"] = []
        return pipeline

    @property
    def neighbour_pipeline(self) -> str:
        return f"{self.pipeline}-apps"

    def config(self) -> Config:
        return parse_config(self.config_dict())

    def write_config(self, path: Path | None = None) -> Path:
        path = path or self.root / "promotion-exporter.yml"
        path.write_text(yaml.safe_dump(self.config_dict(), sort_keys=False))
        return path
